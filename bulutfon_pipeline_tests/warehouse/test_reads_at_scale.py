"""The runs' reads of a large account fit in the DuckDB memory the accounts loading in
threads of a ``sync`` share, beside a writer.

One account with a million listed calls (3,000 a day for 334 days, 1 % of them never
loaded), each loaded call with two flow steps and an origination, written in bulk with
SQL. Then, as in a multi-account sync, two account threads read what their runs read
outside the turns to write (a day's and a month's pending calls, a month's day counts,
every pending day, the integrity counts), twice each, while a third writes 10 MB
transactions. Session 38 tried a lower limit for these threads (40 MB instead of 64):
``pending_dates`` ran out of memory here, every time; this test failed then. At 64 MB
it failed once in CI (61.7 of 61.0 MiB), so the limit is now 80 MB
(``settings.DUCKDB_ACCOUNTS_MEMORY_LIMIT``, ``benchmarks/ANALYSIS.md``).
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import duckdb
import pytest

from bulutfon_pipeline.account_threads import accounts_in_threads
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.duckdb_connect import kept_open
from bulutfon_pipeline.warehouse.integrity import integrity_counts

CALLS, PER_DAY, EVERY = 1_000_000, 3_000, 100  # the call i is pending when i % EVERY == 7
FIRST_DAY = dt.date(2014, 1, 1)
DAYS = -(-CALLS // PER_DAY)


def _uuid(i: int) -> str:
    return f"u-{i:010d}"


def _build(path: Path) -> None:
    """The account ``big``'s calls, in one transaction of a connection of its own."""
    uuid, day = "'u-' || lpad(i::varchar, 10, '0')", f"(date '{FIRST_DAY}' + (i // {PER_DAY})::int)"
    at = f"timestamptz '{FIRST_DAY} 00:00:00+00' + to_seconds(i * 28)"
    calls, loaded = f"range({CALLS}) t(i)", f"i % {EVERY} <> 7"
    with duckdb.connect(str(path)) as con:
        con.execute(f"""
            INSERT INTO cdr_listing (account, uuid, call_time, call_date, direction, caller,
                callee, first_seen_at, last_seen_at)
            SELECT 'big', {uuid}, {at}, {day}, 'in', '0212' || i, '100', now(), now()
            FROM {calls};
            INSERT INTO cdrs (account, uuid, call_type, direction, caller, callee, call_time,
                call_date, answered, has_recording, missing_call, loaded_at)
            SELECT 'big', {uuid}, 'x', 'in', '0212' || i, '100', {at}, {day}, true, false,
                false, now()
            FROM {calls} WHERE {loaded};
            INSERT INTO call_flow_steps (account, cdr_uuid, step_index, callee, redirection_kind)
            SELECT 'big', {uuid}, s, '100', 'none' FROM {calls}, range(2) u(s) WHERE {loaded};
            INSERT INTO originations (account, cdr_uuid, step_index, attempt_index,
                destination, outcome, answered)
            SELECT 'big', {uuid}, 0, 0, '100', 'answered', true FROM {calls} WHERE {loaded};
            CHECKPOINT;
        """)


@pytest.mark.slow
def test_a_million_call_accounts_reads_fit_the_threads_memory_beside_a_writer(
    duckdb_warehouse: Warehouse,
) -> None:
    path = duckdb_warehouse.path
    _build(path)
    day = FIRST_DAY + dt.timedelta(days=150)
    month = day + dt.timedelta(days=29)
    first = (day - FIRST_DAY).days * PER_DAY
    errors: list[str] = []
    seen: list[tuple[object, ...]] = []

    def reads() -> None:
        wh = Warehouse(path, account="big")
        try:
            for _ in range(2):
                seen.append((
                    wh.pending_uuids(day, day),
                    wh.pending_uuids(day, month),
                    wh.day_counts(day, month),
                    wh.pending_dates(),
                    integrity_counts(wh, lookback=dt.timedelta(days=3650)),
                ))  # fmt: skip
        except Exception as error:
            errors.append(repr(error))

    def writes() -> None:
        wh = Warehouse(path, account="big")
        try:
            for k in range(10):
                with wh.db.transaction() as tx:
                    tx.execute(
                        "INSERT INTO call_flow_steps (account, cdr_uuid, step_index, callee,"
                        f" redirection_kind) SELECT 'other-{k}', 'u' || i, 0, repeat('x', 200),"
                        " 'none' FROM range(50000) t(i)"
                    )
        except Exception as error:
            errors.append(repr(error))

    with accounts_in_threads(50), kept_open():
        threads = [threading.Thread(target=reads) for _ in range(2)]
        threads.append(threading.Thread(target=writes))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert errors == []
    pending = [_uuid(i) for i in range(first, first + 30 * PER_DAY) if i % EVERY == 7]
    pending_day = pending[: PER_DAY // EVERY]
    each_day = {"listed": PER_DAY, "loaded": PER_DAY - len(pending_day), "rejected": 0,
                "pending": len(pending_day)}  # fmt: skip
    month_days = [day + dt.timedelta(days=n) for n in range(30)]
    assert len(seen) == 4
    for uuids, month_pending, counts, pending_days, integrity in seen:
        assert sorted(uuids) == pending_day
        assert sorted(month_pending) == pending
        assert counts == dict.fromkeys(month_days, each_day)
        assert pending_days == [FIRST_DAY + dt.timedelta(days=n) for n in range(DAYS)]
        assert integrity.listed_calls == CALLS
        assert (integrity.orphan_flow_steps, integrity.orphan_originations) == (0, 0)
        assert integrity.rejected_calls == 0
    written = duckdb.connect(str(path), read_only=True)
    with written:
        rows = written.sql("SELECT count(*) FROM call_flow_steps WHERE account LIKE 'other-%'")
        assert rows.fetchall() == [(10 * 50_000,)]
