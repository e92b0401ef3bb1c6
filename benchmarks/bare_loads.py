"""A multi-account sync's loads with no Dagster run around them: each account's listing
scan and detail load (``loads.scan_listing``, ``loads.load_details``, as its runs call
them; no checks, no events) in a thread of one process, against the simulator and the
accounts of ``accounts.py``'s cases. Set against a ``sync`` of the same accounts, it
tells what an account at once costs in the loads themselves and what in the Dagster
runs around them.

    .venv/bin/python benchmarks/bare_loads.py 50 BULUTFON_ACCOUNTS_AT_ONCE=50
    .venv/bin/python benchmarks/bare_loads.py 10 --upto listing --listing-at-once 4

``--upto`` stops each account early: ``client`` (its client opened, nothing sent),
``listing`` (its listing scanned), ``fetch`` (its details fetched and dropped) or
``load`` (the default: loaded, and the tables compared with the simulator's).
``--listing-at-once K`` lets only K accounts scan their listing at the same time.
``--sync`` runs the ``bulutfon-pipeline sync`` of the same case instead. Prints the
case's figures (``accounts._case``) as one JSON line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

UPTO = ("client", "listing", "fetch", "load")


def _child() -> None:
    """Inside the child: every account's loads, ``BARE_UPTO`` far, in threads."""
    from bulutfon_pipeline import versions
    from bulutfon_pipeline.account_threads import accounts_in_threads, shared_detail_batch
    from bulutfon_pipeline.accounts import Account, select_accounts
    from bulutfon_pipeline.loads import group_dates, load_details, scan_listing
    from bulutfon_pipeline.resources import BulutfonResource
    from bulutfon_pipeline.runner.accounts import even_rounds
    from bulutfon_pipeline.runner.preflight import read_settings
    from bulutfon_pipeline.warehouse import Warehouse

    upto = os.environ["BARE_UPTO"]
    scans = int(os.environ.get("BARE_LISTING_AT_ONCE") or 0)
    settings = read_settings()
    chosen = select_accounts(None)
    threads = even_rounds(len(chosen), settings.accounts_at_once)
    # ``client``: every account's client open at the same moment (one round only).
    together = threading.Barrier(threads) if threads == len(chosen) else None
    scan_turns = threading.BoundedSemaphore(scans) if scans else contextlib.nullcontext()
    resource = BulutfonResource()

    def one(account: Account) -> None:
        warehouse = Warehouse.from_settings(settings, account=account.name)
        with resource.client(account) as client:
            if upto == "client":
                if together is not None:
                    together.wait()
                return
            with scan_turns:
                scan_listing(
                    client,
                    warehouse,
                    lookback=settings.lookback,
                    start_date=account.start_date or settings.start_date,
                )
            if upto == "listing":
                return
            for first, last in group_dates(warehouse.pending_dates()):
                if upto == "fetch":
                    keys = versions.pending_details(client, warehouse, first, last, refetch=False)
                    for _ in client.fetch_details(keys):
                        pass
                    continue
                batch = shared_detail_batch(settings.detail_batch_size)
                load_details(client, warehouse, start=first, end=last, batch_size=batch)

    with (
        Warehouse.from_settings(settings).schema_ready(),
        accounts_in_threads(threads),
        concurrent.futures.ThreadPoolExecutor(threads) as pool,
    ):
        for future in [pool.submit(one, account) for account in chosen]:
            future.result()


def main(argv: list[str]) -> dict[str, Any]:
    """Run the case the arguments describe; its figures."""
    import accounts
    from common import WORK

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("accounts", type=int, help="accounts of 400 calls each")
    parser.add_argument("--upto", choices=UPTO, default="load")
    parser.add_argument("--listing-at-once", type=int, default=0, metavar="K")
    parser.add_argument("--sync", action="store_true", help="the CLI's sync instead")
    parser.add_argument("variables", nargs="*", metavar="VAR=value", help="for the child")
    args = parser.parse_intermixed_args(argv)
    env = dict(a.split("=", 1) for a in args.variables)
    env.update(BARE_UPTO=args.upto, BARE_LISTING_AT_ONCE=str(args.listing_at_once))
    cli = (accounts.CLI,) if args.sync else (sys.executable, str(Path(__file__)), "--child")
    days, calls_per_day = accounts.CASES["one"][1:3]
    WORK.mkdir(parents=True, exist_ok=True)
    out = accounts._case(
        f"bare{args.accounts}",
        accounts=args.accounts,
        days=days,
        calls_per_day=calls_per_day,
        limited=True,
        child_env=env,
        cli=cli,
    )
    out["upto"] = "sync" if args.sync else args.upto
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child()
    else:
        print(json.dumps(main(sys.argv[1:])))
