"""A multi-account sync's loads with no Dagster run around them: each account's listing
scan and detail load (``loads.scan_listing``, ``loads.load_details``, as its runs call
them; no checks, no events) in a thread of one process, against the simulator and the
accounts of a case of ``accounts.py`` (``one``: 50 accounts; ``few``: 10). Set against a
``sync`` of the same accounts, it tells what an account at once costs in the loads
themselves and what in the Dagster runs around them.

    .venv/bin/python benchmarks/bare_loads.py one BULUTFON_ACCOUNTS_AT_ONCE=50
    .venv/bin/python benchmarks/bare_loads.py few --upto listing --listing-at-once 4

``--upto`` stops each account early: ``client`` (its client opened, nothing sent),
``listing`` (its listing scanned), ``fetch`` (its details fetched and dropped) or
``load`` (the default: loaded, and the tables compared with the simulator's).
``--listing-at-once K`` lets only K accounts scan their listing at the same time.
``--one-writer``: the accounts' threads only fetch, and one thread loads every account's
details (``load_details`` on what they fetched). ``--sync`` runs the ``bulutfon-pipeline
sync`` of the same case instead. Prints the case's figures (``accounts.one_case``) as one
JSON line.
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
    from bulutfon_pipeline.account_threads import accounts_in_threads
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
    one_writer = _OneWriter(settings) if os.environ.get("BARE_ONE_WRITER") else None

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
                if upto == "fetch" or one_writer is not None:  # fetched here, then dropped
                    keys = versions.pending_details(client, warehouse, first, last, refetch=False)
                    for result in client.fetch_details(keys):
                        if one_writer is not None:  # or written by the one writer
                            one_writer.put((account.name, result))
                    continue
                load_details(
                    client, warehouse, start=first, end=last, batch_size=settings.detail_batch_size
                )

    with (
        Warehouse.from_settings(settings).schema_ready(),
        accounts_in_threads(threads),
        concurrent.futures.ThreadPoolExecutor(threads) as pool,
    ):
        if one_writer is not None:
            one_writer.start()
        for future in [pool.submit(one, account) for account in chosen]:
            future.result()
        if one_writer is not None:
            one_writer.finish()


class _OneWriter:
    """``--one-writer``: one thread loads every account's details, in batches of one
    account's (``detail_batch_size`` at most, the account holding the most
    whenever ``SHARED_DETAILS_BUDGET`` details wait); the accounts' threads only fetch."""

    def __init__(self, settings: Any) -> None:
        import queue

        from bulutfon_pipeline.account_threads import SHARED_DETAILS_BUDGET

        self.settings = settings
        self.budget = SHARED_DETAILS_BUDGET
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=self.budget)
        self.thread = threading.Thread(target=self._run, name="one-writer", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread.start()

    def put(self, item: Any) -> None:
        self.queue.put(item)

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        waiting: dict[str, list[Any]] = {}
        held, stopped = 0, False
        try:
            while (item := self.queue.get()) is not None:
                name, result = item
                waiting.setdefault(name, []).append(result)
                held += 1
                if len(waiting[name]) >= self.settings.detail_batch_size or held >= self.budget:
                    largest = max(waiting, key=lambda n: len(waiting[n]))
                    held -= self._write(largest, waiting.pop(largest))
            stopped = True
            for name in list(waiting):
                self._write(name, waiting.pop(name))
        except BaseException as error:  # reported by ``finish``
            self.error = error
            while not stopped and self.queue.get() is not None:  # no fetch waits on it
                pass

    def _write(self, name: str, batch: list[Any]) -> int:
        """``batch`` (one account's fetched details) through the pipeline's own
        ``load_details``, as one transaction; how many details it held."""
        import datetime as dt

        from bulutfon_pipeline.loads import load_details
        from bulutfon_pipeline.warehouse import Warehouse

        warehouse = Warehouse.from_settings(self.settings, account=name)
        today = dt.date.today()  # only named in the summary: the uuids are given
        uuids = [result.uuid for result in batch]
        load_details(_Fetched(batch), warehouse, start=today, end=today, batch_size=len(batch),
                     uuids=uuids)  # fmt: skip
        return len(batch)


class _Fetched:
    """A client whose ``fetch_details`` gives back details fetched already."""

    def __init__(self, results: list[Any]) -> None:
        self.results = results

    def fetch_details(self, uuids: Any) -> Any:
        return iter(self.results)


def main(argv: list[str]) -> dict[str, Any]:
    """Run the case the arguments describe; its figures (``accounts.one_case``)."""
    import accounts
    from common import WORK

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=list(accounts.CASES), help="a case of accounts.py")
    parser.add_argument("--upto", choices=UPTO, default="load")
    parser.add_argument("--listing-at-once", type=int, default=0, metavar="K")
    parser.add_argument("--sync", action="store_true", help="the CLI's sync instead")
    parser.add_argument("--one-writer", action="store_true", help="one thread writes")
    parser.add_argument("variables", nargs="*", metavar="VAR=value", help="for the child")
    args = parser.parse_intermixed_args(argv)
    child = [f"BARE_UPTO={args.upto}", f"BARE_LISTING_AT_ONCE={args.listing_at_once}"]
    if args.one_writer:
        child.append("BARE_ONE_WRITER=1")
    cli = (accounts.CLI,) if args.sync else (sys.executable, str(Path(__file__)), "--child")
    WORK.mkdir(parents=True, exist_ok=True)
    out = accounts.one_case(args.case, [*args.variables, *child], cli=cli)
    out["upto"] = "sync" if args.sync else args.upto
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child()
    else:
        print(json.dumps(main(sys.argv[1:])))
