"""Many accounts in one warehouse (issue 14): each ``Warehouse(..., account=NAME)`` reads
and writes only NAME's rows, on DuckDB and PostgreSQL.

Two accounts of one simulator (each its own token and dataset) are loaded through the
library (``loads.scan_listing`` and ``loads.load_details``, the code path of the assets
and the CLI) into one warehouse; each account's tables are then exactly its own expected
tables, and its high-water mark and pending calls its own. A uuid loaded by two accounts
is two rows, and a change in one leaves the other alone.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bulutfon_pipeline import loads
from bulutfon_pipeline.api.client import BulutfonClient
from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.normalize import Reject, normalize_details, normalize_listing
from bulutfon_pipeline.warehouse import Warehouse, WarehouseLockedError, schema
from bulutfon_pipeline.warehouse.change_log import changes_since
from bulutfon_pipeline.warehouse.integrity import integrity_counts
from bulutfon_pipeline.warehouse.postgres_backend import Postgres
from bulutfon_pipeline_tests.fixtures import load_fixture
from bulutfon_pipeline_tests.helpers import Database, assert_tables_match, read_table

ACCOUNTS = ("izmir", "ankara")
T0 = datetime(2015, 4, 17, 9, 0, tzinfo=UTC)
T1 = datetime(2015, 4, 17, 10, 0, tzinfo=UTC)


def _database(warehouse: Warehouse, request: pytest.FixtureRequest) -> Database:
    """What the test helpers read: the file, or the URL and the fixture's schema."""
    if warehouse.is_server:
        return (request.getfixturevalue("postgres_url"), "warehouse")
    return warehouse.path


def _as(warehouse: Warehouse, account: str) -> Warehouse:
    """The same warehouse (backend object) for another account."""
    return Warehouse.on(warehouse.db, account=account)


def _load_account(sim: Any, warehouse: Warehouse) -> loads.DetailLoadSummary:
    env = {**sim.env(account=warehouse.account), "BULUTFON_MAX_RETRIES": "1"}
    with BulutfonClient(ClientConfig.from_env(env)) as client:
        scan = loads.scan_listing(
            client, warehouse, lookback=timedelta(hours=2), start_date=date(2015, 1, 1)
        )
        first, last = min(scan.days_touched), max(scan.days_touched)
        return loads.load_details(client, warehouse, start=first, end=last, batch_size=7)


def test_two_accounts_load_into_one_warehouse_each_exactly_its_own(
    simulator_factory: Any, warehouse: Warehouse, request: pytest.FixtureRequest
) -> None:
    sim = simulator_factory(accounts=list(ACCOUNTS), days=2, calls_per_day=12, dialect="v1")
    db = _database(warehouse, request)
    izmir, ankara = (_as(warehouse, name) for name in ACCOUNTS)
    truth = {name: sim.expected_tables(account=name) for name in ACCOUNTS}
    assert {r["uuid"] for r in truth["izmir"]["cdrs"]}.isdisjoint(
        r["uuid"] for r in truth["ankara"]["cdrs"]
    )

    _load_account(sim, izmir)

    # izmir's rows are in, and ankara has nothing: no mark, nothing pending, no rows.
    assert_tables_match(db, truth["izmir"], account="izmir")
    assert ankara.high_water_mark() is None
    assert ankara.pending_dates() == [] and ankara.listed_count(date(2015, 1, 1), T0.date()) == 0
    assert read_table(db, "cdrs", account="ankara") == []

    summary = _load_account(sim, ankara)

    assert summary.new == len(truth["ankara"]["cdrs"])
    for name, wh in (("izmir", izmir), ("ankara", ankara)):
        assert_tables_match(db, truth[name], account=name)
        listed = {r["uuid"] for r in read_table(db, "cdr_listing", account=name)}
        assert listed == {r["uuid"] for r in truth[name]["cdrs"]} | {
            r["uuid"] for r in truth[name]["load_rejects"]
        }
        # Each mark is the newest call its own listing showed.
        newest = max(r["call_time"] for r in read_table(db, "cdr_listing", account=name))
        assert wh.high_water_mark() == newest
        assert wh.pending_dates() == []
        counts = integrity_counts(wh, lookback=timedelta(hours=1))
        assert counts.listed_calls == len(listed) and counts.listed_without_detail == 0
    assert izmir.high_water_mark() != ankara.high_water_mark()
    total = len(read_table(db, "cdrs", account="izmir")) + len(
        read_table(db, "cdrs", account="ankara")
    )
    with warehouse.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM cdrs") == total


def _detail_load(wh: Warehouse, payload: dict[str, Any], at: datetime) -> None:
    wh.load_details([(payload["uuid"], payload)], normalize_details([payload]), fetched_at=at)


def test_a_uuid_in_two_accounts_is_two_rows(
    warehouse: Warehouse, request: pytest.FixtureRequest
) -> None:
    db = _database(warehouse, request)
    detail = load_fixture("v1_cdr_detail.json")["cdr"]
    uuid = detail["uuid"]
    one, two = _as(warehouse, "one"), _as(warehouse, "two")
    listing = normalize_listing([detail])
    for wh in (one, two):
        wh.upsert_listing(listing, seen_at=T0)
        _detail_load(wh, detail, T0)
    one.add_rejects([Reject(uuid, "recording", "404", None)])

    with warehouse.transaction() as tx:
        rows = tx.execute(
            "SELECT account, uuid FROM cdrs WHERE uuid = ? ORDER BY account", [uuid]
        ).fetchall()
    assert [tuple(row) for row in rows] == [("one", uuid), ("two", uuid)]
    columns = [c.name for c in schema.cdrs.columns if c.name not in ("account", "loaded_at")]
    assert read_table(db, "cdrs", columns, account="one") == read_table(
        db, "cdrs", columns, account="two"
    )
    steps_one = read_table(db, "call_flow_steps", account="one")
    assert steps_one == read_table(db, "call_flow_steps", account="two") != []

    # A change of the call in account two: two's row and audit change, one's stay.
    changed = {**detail, "call_price": "0.0300"}
    _detail_load(two, changed, T1)
    prices = {
        name: [r["call_price"] for r in read_table(db, "cdrs", account=name)]
        for name in ("one", "two")
    }
    assert prices["one"] != prices["two"]
    assert [(c.uuid, c.field) for c in changes_since(two, T0)] == [(uuid, "call_price")]
    assert changes_since(one, T0) == []
    # Rejects, pending calls and recording candidates are each account's own.
    assert {r["stage"] for r in read_table(db, "load_rejects", account="one")} == {"recording"}
    assert read_table(db, "load_rejects", account="two") == []
    day = read_table(db, "cdrs", account="one")[0]["call_date"]
    assert one.recording_candidates(day, day) == []  # one's recording was rejected
    assert two.recording_candidates(day, day, refetch=True) == one.recording_candidates(
        day, day, refetch=True
    )
    assert one.pending_uuids(day, day, refetch=True) == [uuid]


def test_postgres_sync_locks_are_per_account(postgres_url: str) -> None:
    # Two accounts' syncs (and listing scans) hold their locks at once; a second sync of
    # the same account is refused (the runner's exit 3), on the same schema.
    izmir, ankara, izmir_again = (
        Warehouse.on(Postgres(postgres_url, lock_timeout_s=0.2), account=name)
        for name in ("izmir", "ankara", "izmir")
    )
    with izmir.advisory_lock(0.2), ankara.advisory_lock(0.2):
        with izmir.listing_scan_lock(), ankara.listing_scan_lock():
            pass
        with (
            pytest.raises(WarehouseLockedError, match="locked by another sync"),
            izmir_again.advisory_lock(0.2),
        ):
            pass
    with izmir_again.advisory_lock(0.2):  # released with the block
        pass


def test_syncs_of_different_accounts_hold_the_postgres_writer_lock_at_once(
    postgres_url: str,
) -> None:
    # The runner's lock (``writer_lock``), as two ``sync --account`` processes take it:
    # disjoint accounts write at once; a sync wanting a held account gives up (exit 3)
    # and keeps none of its accounts; one connection holds all of a sync's accounts.
    from bulutfon_pipeline.runner.errors import BusyError
    from bulutfon_pipeline.runner.preflight import writer_lock
    from bulutfon_pipeline.settings import Settings
    from bulutfon_pipeline.warehouse.postgres_lock import lock_key

    names = ("izmir", "ankara", "bursa")
    settings = Settings(warehouse_url=postgres_url, lock_timeout_s=0.3)
    server = Postgres(postgres_url)

    keys = [lock_key(server.schema, "sync", name) & 0xFFFFFFFFFFFFFFFF for name in names]
    wanted = [(key >> 32, key & 0xFFFFFFFF) for key in keys]

    def holders() -> list[tuple[int, int]]:  # (backend, how many of these accounts' locks)
        with server.connect() as con:
            rows = con.execute(
                "SELECT pid, classid::int8, objid::int8 FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            ).fetchall()
        by_pid: dict[int, int] = {}
        for pid, classid, objid in rows:
            if (classid, objid) in wanted:
                by_pid[pid] = by_pid.get(pid, 0) + 1
        return sorted(by_pid.items())

    with writer_lock(settings, accounts=["izmir", "ankara"]):
        assert [n for _, n in holders()] == [2]
        with writer_lock(settings, accounts=["bursa"]):
            assert sorted(n for _, n in holders()) == [1, 2]
        waits: list[str] = []
        with (
            pytest.raises(BusyError, match="locked by another sync"),
            writer_lock(settings, accounts=["bursa", "ankara"], on_wait=waits.append),
        ):
            pass
        assert len(waits) == 1
        assert [n for _, n in holders()] == [2]  # bursa, taken first, was let go
    assert holders() == []


def test_a_listing_scan_clears_only_its_own_accounts_staged_rows(
    warehouse: Warehouse,
) -> None:
    # A scan that begins deletes what a killed scan of its account left, and nothing of
    # another account's scan in progress, which still finishes.
    items = load_fixture("seed_cdr_list.json")["cdrs"]
    frame = normalize_listing(items).frame.assign(page=1)
    one, two = _as(warehouse, "one"), _as(warehouse, "two")
    running = two.begin_listing_scan()
    two.stage_listing(running, frame)
    one.stage_listing(one.begin_listing_scan(), frame)  # killed before it finished

    fresh = one.begin_listing_scan()

    assert fresh.cleared == len(frame)
    result = two.finish_listing_scan(running, seen_at=T0)
    assert result.new == len(frame) and two.high_water_mark() is not None
    assert one.high_water_mark() is None
    assert one.listed_count(dt.date(2015, 1, 1), dt.date(2015, 12, 31)) == 0
    assert two.listed_count(dt.date(2015, 1, 1), dt.date(2015, 12, 31)) == len(frame)


def test_postgres_detail_batches_take_turns_per_account(postgres_url: str) -> None:
    # While a batch of izmir's holds its turn (an open transaction), ankara's batch writes
    # at once, and another batch of izmir's waits for its turn (here: past the timeout).
    def warehouse(account: str) -> Warehouse:
        return Warehouse.on(Postgres(postgres_url, lock_timeout_s=1.0), account=account)

    izmir, ankara, izmir_again = warehouse("izmir"), warehouse("ankara"), warehouse("izmir")
    izmir.ensure_schema()
    detail = load_fixture("v1_cdr_detail.json")["cdr"]
    with izmir.transaction() as tx:
        tx.take_turns("details izmir")
        _detail_load(ankara, detail, T0)
        with pytest.raises(WarehouseLockedError):
            _detail_load(izmir_again, detail, T0)
    _detail_load(izmir_again, detail, T0)
    with izmir.transaction() as tx:
        rows = tx.execute("SELECT account FROM cdrs ORDER BY account").fetchall()
    assert [account for (account,) in rows] == ["ankara", "izmir"]
