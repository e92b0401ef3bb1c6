"""Several PBX accounts in one command: which accounts, running each one's work in a
thread of its own (a failure stays that account's, one line naming it), and where each
account stands (the ``accounts`` command)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bulutfon_pipeline.account_threads import accounts_in_threads
from bulutfon_pipeline.accounts import Account, AccountsError, select_accounts
from bulutfon_pipeline.runner.errors import SetupError, user_error
from bulutfon_pipeline.runner.interrupts import StoppedError, StopRequestedError
from bulutfon_pipeline.runner.preflight import read_settings
from bulutfon_pipeline.settings import DEFAULT_ACCOUNTS_AT_ONCE
from bulutfon_pipeline.warehouse import Warehouse, schema
from bulutfon_pipeline.warehouse.duckdb_connect import kept_open

LOGGER = logging.getLogger(__name__)

# BULUTFON_ACCOUNTS_AT_ONCE (settings): the work is mostly waiting on the API; DuckDB's
# writes take turns inside the process, PostgreSQL's run in parallel.

T = TypeVar("T")


def select(names: Sequence[str] | None) -> list[Account]:
    """The accounts a command works on: every account, or those named.

    Raises:
        SetupError: the accounts file is malformed, or a name is not one of its accounts
            (the message lists the known ones).
    """
    try:
        return select_accounts(names)
    except AccountsError as error:
        raise SetupError(str(error)) from None


def run_each(
    chosen: Sequence[Account],
    work: Callable[[Account], T],
    at_once: int = DEFAULT_ACCOUNTS_AT_ONCE,
) -> tuple[dict[str, T], dict[str, str]]:
    """``work`` for every account, up to ``at_once`` at a time
    (``Settings.accounts_at_once``, in :func:`even_rounds`), each in a thread; the results
    and, for the accounts that failed, one line each naming the account, both in the
    accounts' order. A stop signal (SIGINT/SIGTERM) stops the accounts between their runs
    and is raised here."""
    results: dict[str, T] = {}
    failures: dict[str, str] = {}
    threads = even_rounds(len(chosen), at_once)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="account")
    # The pool is shut down (its threads done) before the memory limit goes back.
    with accounts_in_threads(threads), kept_open():  # DuckDB files stay open between turns
        try:
            futures = {pool.submit(work, account): account.name for account in chosen}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    results[name] = future.result()
                except (StopRequestedError, StoppedError):
                    raise
                except Exception as error:
                    LOGGER.debug("account %r failed", name, exc_info=True)
                    failures[name] = one_line(name, error)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    order = [account.name for account in chosen]
    return (
        {name: results[name] for name in order if name in results},
        {name: failures[name] for name in order if name in failures},
    )


def even_rounds(accounts: int, at_once: int) -> int:
    """How many of ``accounts`` load at once: as few as take the same number of rounds as
    ``at_once`` would. Each account's load takes about as long as the next (its calls at
    its rate), so they go in rounds; a last round of a few accounts leaves the rest of the
    rates unused, and more threads only cost memory. 50 accounts at up to 16: four rounds
    of 13, not 16, 16, 16 and 2; at up to 20: three rounds of 17, not 20, 20 and 10."""
    if accounts <= 1:
        return 1
    rounds = -(-accounts // max(1, at_once))
    return -(-accounts // rounds)


def one_line(account: str, error: BaseException) -> str:
    """An account's failure as one line naming it (the project error in a Dagster run's
    chain when there is one)."""
    found = user_error(error)
    message = str(found if found is not None else error).strip().splitlines()
    text = message[0] if message else type(error).__name__
    prefix = f"account {account!r}: "
    return text if text.startswith(prefix) else prefix + text


@dataclass(frozen=True)
class AccountStatus:
    """Where one account's loads stand, read from the warehouse."""

    name: str
    #: from BULUTFON_ACCOUNTS_FILE (``False``: the ``default`` account of today's variables)
    from_file: bool
    #: when its last batch of details was committed (``None``: never)
    last_load: dt.datetime | None
    #: the newest listed call time (``None``: its listing was never scanned)
    high_water_mark: dt.datetime | None
    #: listed calls still to load, and their days
    pending_calls: int
    pending_days: tuple[dt.date, ...]
    #: the one-line error of its last failed sync or backfill, and when (``None``: its last
    #: one loaded, or none failed), from :func:`record_outcomes`
    last_error: str | None = None
    last_error_at: dt.datetime | None = None


#: ``_pipeline_state`` key of an account's :attr:`AccountStatus.last_error`.
LAST_ERROR_KEY = "last_sync_error"


def record_outcomes(warehouse: Warehouse, names: Sequence[str], failures: dict[str, str]) -> None:
    """After a sync or backfill of the accounts ``names``: keep the error of each that
    failed (``failures``, one line each, as printed: no secret), clear it for the others,
    in one transaction. A warehouse that cannot take it (the failure may be its own)
    keeps what it had: the sync's result stands either way."""
    now = dt.datetime.now(dt.UTC)
    try:
        with warehouse.transaction() as tx:
            for name in names:
                if name in failures:
                    row = {"account": name, "key": LAST_ERROR_KEY, "value": failures[name]}
                    tx.replace_row(schema.pipeline_state, {**row, "updated_at": now})
                else:
                    tx.execute(
                        "DELETE FROM _pipeline_state WHERE account = ? AND key = ?",
                        [name, LAST_ERROR_KEY],
                    )
    except Exception:
        LOGGER.debug("the accounts' outcomes were not recorded", exc_info=True)


def run_accounts_status(accounts: Sequence[str] | None = None) -> list[AccountStatus]:
    """Each account (of ``accounts``, default every one) with its last load, high-water
    mark and pending calls. Reads only; a warehouse not created yet shows none of them.

    Raises:
        SetupError: the settings or the accounts file are malformed, or a name is unknown.
    """
    chosen = select(accounts)
    settings = read_settings()
    exists = settings.warehouse_url is not None or settings.duckdb_path.exists()
    statuses = []
    for account in chosen:
        last: dt.datetime | None = None
        mark: dt.datetime | None = None
        pending, days = 0, tuple[dt.date, ...]()
        failed: Any = None
        if exists:
            warehouse = Warehouse.from_settings(settings, account=account.name)
            warehouse.ensure_schema()
            mark = warehouse.high_water_mark()
            progress_now = warehouse.load_progress(dt.datetime.now(dt.UTC))
            pending, days = progress_now.pending_calls, progress_now.pending_days
            last = _last_load(warehouse)
            error = warehouse.fetch_frame(_LAST_ERROR_SQL, [account.name, LAST_ERROR_KEY])
            failed = error.iloc[0] if len(error) else None
        statuses.append(
            AccountStatus(
                account.name, account.from_file, last, mark, pending, days,
                last_error=None if failed is None else str(failed["value"]),
                last_error_at=None if failed is None else _instant(failed["updated_at"]),
            )
        )  # fmt: skip
    return statuses


_LAST_ERROR_SQL = "SELECT value, updated_at FROM _pipeline_state WHERE account = ? AND key = ?"


def _last_load(warehouse: Warehouse) -> dt.datetime | None:
    """When the account's newest ``cdrs`` row was written."""
    frame = warehouse.fetch_frame(_LAST_LOAD_SQL, [warehouse.account])
    return _instant(frame.iloc[0, 0] if len(frame) else None)


def _instant(value: Any) -> dt.datetime | None:
    """A timestamp read back as a datetime (``None`` for none)."""
    import pandas as pd

    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime()


#: The newest ``loaded_at`` of an account's calls (``account`` is the first column of
#: every table of the account-aware warehouse).
_LAST_LOAD_SQL = "SELECT max(loaded_at) FROM cdrs WHERE account = ?"
