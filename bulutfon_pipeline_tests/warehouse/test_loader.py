"""Warehouse loader: exact rows, idempotency, child replacement, state, rejects, failures.

The ``warehouse`` fixture runs each test on DuckDB and on PostgreSQL (a real server);
``duckdb_warehouse`` tests what only the file has (its lock, read-only connections).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bulutfon_pipeline import checks
from bulutfon_pipeline.normalize import Reject, normalize_details, normalize_listing
from bulutfon_pipeline.warehouse import (
    RecordingRow,
    Warehouse,
    WarehouseError,
    WarehouseLockedError,
    schema,
)
from bulutfon_pipeline.warehouse import listing as listing_sql
from bulutfon_pipeline.warehouse.duckdb_backend import DuckDB
from bulutfon_pipeline_tests.fixtures import load_fixture
from bulutfon_pipeline_tests.warehouse.test_migrations import fixture_statements, with_bulk_keys

UUID = "dd3b3506-e40e-11e4-9880-17aee3ce4e7b"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
TABLES = ("cdr_listing", "cdrs", "call_flow_steps", "originations", "raw_cdr_details",
          "load_rejects", "_pipeline_state")  # fmt: skip


def seed_detail() -> dict[str, Any]:
    return load_fixture("seed_cdr_detail.json")["cdr"]


def seed_listing() -> list[dict[str, Any]]:
    return load_fixture("seed_cdr_list.json")["cdrs"]


def rows(wh: Warehouse, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with wh.transaction() as con:
        return con.execute(sql, params or []).fetchall()


def snapshot(wh: Warehouse, *, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in a stable order, minus the named columns (by table.column).

    Portable SQL (both backends): JSON as text, ordered by every column.
    """
    out = {}
    with wh.transaction() as con:
        for table in TABLES:
            columns = [
                f'CAST("{name}" AS VARCHAR)' if kind.lower() == "json" else f'"{name}"'
                for (name, kind) in con.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = ? AND table_schema = current_schema() "
                    "ORDER BY ordinal_position",
                    [table],
                ).fetchall()
                if f"{table}.{name}" not in skip
            ]
            order = ", ".join(str(i) for i in range(1, len(columns) + 1))
            select = ", ".join(columns)
            out[table] = con.execute(f'SELECT {select} FROM "{table}" ORDER BY {order}').fetchall()
    return out


def load(wh: Warehouse, payloads: list[Any], *, at: datetime = T0, **kwargs: Any) -> Any:
    raw = [(p["uuid"], p) for p in payloads if isinstance(p, dict) and p.get("uuid")]
    return wh.load_details(raw, normalize_details(payloads), fetched_at=at, **kwargs)


# --- details ---------------------------------------------------------------------------


def test_seed_detail_loads_exact_rows(warehouse: Warehouse) -> None:
    result = load(warehouse, [seed_detail()])

    assert (result.new, result.updated, result.rejected, result.raw_stored) == (1, 0, 0, 1)
    assert (result.call_flow_steps, result.originations) == (4, 4)
    columns = ", ".join(
        c.name for c in schema.cdrs.columns if c.name not in ("account", "loaded_at")
    )
    assert rows(warehouse, "SELECT DISTINCT account FROM cdrs") == [("default",)]
    cdr = rows(warehouse, f"SELECT {columns} FROM cdrs")
    assert cdr == [
        (UUID, "voice", "IN", "90507xxxxxxx", "90850885xxxx", None,
         datetime(2015, 4, 16, 8, 2, tzinfo=UTC), datetime(2015, 4, 16, 8, 2, tzinfo=UTC),
         datetime(2015, 4, 16, 8, 4, tzinfo=UTC), date(2015, 4, 16), True, 0, 120, "Var", True,
         "Normal", "NORMAL_CLEARING", "İstemci tarafından sonlandırılan çağrı", "recv_bye",
         False, None)
    ]  # fmt: skip
    t0 = datetime(2015, 4, 16, 8, 2, 2, tzinfo=UTC)
    t1 = datetime(2015, 4, 16, 8, 4, 44, tzinfo=UTC)
    steps = rows(warehouse, "SELECT * FROM call_flow_steps ORDER BY step_index")
    assert [step[1:] for step in steps] == [
        (UUID, 0, "90850885xxxx", t0, None, None, "Menüye Yönlendi - (10)",
         "REDIRECTED_TO_MENU", "10"),
        (UUID, 1, "10", t0, t0, None, "Menüye Yönlendi - (11)", "REDIRECTED_TO_MENU", "11"),
        (UUID, 2, "11", t0, t0, None, "Gruba Yönlendi - (101)", "REDIRECTED_TO_GROUP", "101"),
        (UUID, 3, "101", t0, t0, t1, "Gruba bağlanılıyor", "CONNECTING_TO_GROUP", None),
    ]  # fmt: skip
    attempts = rows(warehouse, "SELECT * FROM originations ORDER BY attempt_index")
    assert [attempt[1:] for attempt in attempts] == [
        (UUID, 3, 0, "1004", t0, t0, t1, "Cevapladı", "ANSWERED", True),
        (UUID, 3, 1, "1008", t0, t0, t1, "Başkası açtı", "LOSE_RACE", False),
        (UUID, 3, 2, "1009", t0, t0, t1, "Başkası açtı", "LOSE_RACE", False),
        (UUID, 3, 3, "1015", t0, t0, t1, "Başkası açtı", "LOSE_RACE", False),
    ]
    ((_, uuid, fetched_at, payload),) = rows(warehouse, "SELECT * FROM raw_cdr_details")
    assert (uuid, fetched_at, json.loads(payload)) == (UUID, T0, seed_detail())
    ((loaded_at,),) = rows(warehouse, "SELECT loaded_at FROM cdrs")
    assert loaded_at.tzinfo is not None


def test_price_loads_as_exact_decimal(warehouse: Warehouse) -> None:
    v1 = load_fixture("v1_cdr_detail.json")["cdr"]
    load(warehouse, [v1, {**v1, "uuid": "other", "call_price": 12345678.9999}])
    assert rows(warehouse, "SELECT uuid, call_price FROM cdrs ORDER BY uuid") == [
        (UUID, Decimal("0.0182")),
        ("other", Decimal("12345678.9999")),
    ]


def test_loading_the_same_batch_twice_is_idempotent(warehouse: Warehouse) -> None:
    payloads = [seed_detail(), *seed_listing(), {"uuid": "broken", "call_time": "31-02-2015 10:00"}]
    load(warehouse, payloads)
    warehouse.upsert_listing(normalize_listing(seed_listing()), seen_at=T0)
    first = snapshot(warehouse, skip=("cdrs.loaded_at",))

    again = load(warehouse, payloads)
    warehouse.upsert_listing(normalize_listing(seed_listing()), seen_at=T0)

    assert (again.new, again.updated, again.rejected) == (0, 6, 1)
    assert snapshot(warehouse, skip=("cdrs.loaded_at",)) == first
    assert len(first["cdrs"]) == 6 and len(first["load_rejects"]) == 1


def test_changed_flow_replaces_child_rows(warehouse: Warehouse) -> None:
    load(warehouse, [seed_detail()])
    changed = seed_detail()
    # the call now went straight to the group, which rang two phones
    changed["call_flow"] = changed["call_flow"][2:]
    changed["call_flow"][1]["origination"] = changed["call_flow"][1]["origination"][:2]
    changed["call_flow"][1]["origination"][1]["result"] = "Cevaplanmadı"

    result = load(warehouse, [changed], at=T1)

    assert (result.new, result.updated) == (0, 1)
    assert rows(warehouse, "SELECT step_index, callee, redirection_kind FROM call_flow_steps "
                           "ORDER BY step_index") == [
        (0, "11", "REDIRECTED_TO_GROUP"),
        (1, "101", "CONNECTING_TO_GROUP"),
    ]  # fmt: skip
    assert rows(warehouse, "SELECT step_index, attempt_index, destination, outcome "
                           "FROM originations ORDER BY step_index, attempt_index") == [
        (1, 0, "1004", "ANSWERED"),
        (1, 1, "1008", "OTHER"),
    ]  # fmt: skip
    assert rows(warehouse, "SELECT fetched_at FROM raw_cdr_details") == [(T1,)]


def _enforced_key_warehouse(path: Path) -> Warehouse:
    """A warehouse made before the bulk tables' keys became the loader's to keep: their
    DDL still has the PRIMARY KEY constraints (the tables of the release before
    migrations, ``fixtures/warehouse_before_migrations.sql``, with the keys)."""
    con = duckdb.connect(str(path))
    try:
        for statement in with_bulk_keys(fixture_statements()):
            if statement.startswith("CREATE TABLE"):
                con.execute(statement)
    finally:
        con.close()
    wh = Warehouse(path, lock_timeout_s=10.0)
    wh.ensure_schema()
    return wh


def test_a_warehouse_with_the_old_enforced_keys_still_loads_and_replaces(
    tmp_path: Path,
) -> None:
    old = _enforced_key_warehouse(tmp_path / "old.duckdb")
    new = Warehouse(tmp_path / "new.duckdb")
    new.ensure_schema()
    changed = seed_detail()
    changed["call_flow"] = changed["call_flow"][2:]
    for wh in (old, new):
        load(wh, [seed_detail(), *seed_listing()])
        load(wh, [changed, *seed_listing()], at=T1)
    constraints = rows(
        old,
        "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
        "ORDER BY ALL",
    )
    # Migration 0003 rebuilt the tables (account first) as the live metadata makes them:
    # the old keys are gone.
    assert not {"cdrs", "call_flow_steps", "originations", "raw_cdr_details"} & {
        t for (t,) in constraints
    }
    assert snapshot(old, skip=("cdrs.loaded_at",)) == snapshot(new, skip=("cdrs.loaded_at",))
    assert rows(old, "SELECT count(*) FROM call_flow_steps WHERE cdr_uuid = ?", [UUID]) == [(2,)]


def _evaluate_checks(warehouse: Warehouse) -> list:
    return list(checks.evaluate(warehouse, lookback=timedelta(hours=1), reject_rate_warn=0.01))


def test_key_checks_catch_a_repeated_child_key(duckdb_warehouse: Warehouse) -> None:
    warehouse = duckdb_warehouse
    load(warehouse, [seed_detail()])
    first = {r.check_name: r for r in _evaluate_checks(warehouse)}
    assert first["call_flow_steps_key_unique"].passed
    assert first["originations_key_unique"].passed
    assert first["raw_cdr_details_uuid_unique"].passed
    # Nothing in DuckDB stops this row any more; the check must.
    with warehouse.transaction() as con:
        con.execute(
            "INSERT INTO call_flow_steps SELECT * FROM call_flow_steps WHERE step_index = 1"
        )
    after = {r.check_name: r for r in _evaluate_checks(warehouse)}
    assert not after["call_flow_steps_key_unique"].passed
    assert after["call_flow_steps_key_unique"].metadata["duplicate_keys"].value == 1
    assert after["originations_key_unique"].passed


def test_rejects_are_recorded_then_cleared_when_the_call_loads(warehouse: Warehouse) -> None:
    bad = seed_detail()
    bad["call_flow"][3]["origination"][0] = "not an object"
    fetch_failure = Reject("gone", "detail", "HTTP 404", None)

    result = load(warehouse, [bad, *seed_listing()], detail_rejects=[fetch_failure])

    assert (result.new, result.rejected) == (5, 2)
    assert rows(warehouse, "SELECT uuid, stage, reason FROM load_rejects ORDER BY uuid") == [
        (UUID, "normalize", "call_flow[3].origination[0]: not an object 'not an object'"),
        ("gone", "detail", "HTTP 404"),
    ]
    assert rows(warehouse, "SELECT count(*) FROM cdrs WHERE uuid = ?", [UUID]) == [(0,)]
    # the raw payload is kept so a normaliser fix can be replayed
    assert rows(warehouse, "SELECT count(*) FROM raw_cdr_details WHERE uuid = ?", [UUID]) == [(1,)]

    load(warehouse, [seed_detail()], at=T1)

    assert rows(warehouse, "SELECT uuid FROM load_rejects") == [("gone",)]
    assert rows(warehouse, "SELECT count(*) FROM originations") == [(4,)]


def test_add_rejects_is_idempotent_and_keeps_one_per_uuid_and_stage(
    warehouse: Warehouse,
) -> None:
    rejects = [
        Reject("a", "recording", "HTTP 500", None),
        Reject(None, "listing", "uuid: missing", '{"x": 1}'),
    ]
    warehouse.add_rejects(rejects)
    first = snapshot(warehouse)
    warehouse.add_rejects(rejects)
    assert snapshot(warehouse) == first  # rejected_at included: untouched

    warehouse.add_rejects([Reject("a", "recording", "HTTP 404", None)])
    assert rows(warehouse, "SELECT uuid, stage, reason FROM load_rejects ORDER BY 1, 2, 3") == [
        ("a", "recording", "HTTP 404"),
        (None, "listing", "uuid: missing"),
    ]


# --- listing and state -------------------------------------------------------------------


def test_upsert_listing_counts_and_seen_times(warehouse: Warehouse) -> None:
    items = seed_listing()
    first = warehouse.upsert_listing(normalize_listing(items), seen_at=T0)
    assert (first.new, first.updated, first.unchanged, first.rejected) == (5, 0, 0, 0)
    assert first.high_water_mark == datetime(2015, 4, 16, 13, 17, tzinfo=UTC)

    items[0]["direction"] = "OUT"
    second = warehouse.upsert_listing(normalize_listing(items[:2]), seen_at=T1)

    assert (second.new, second.updated, second.unchanged) == (0, 1, 1)
    assert rows(
        warehouse,
        "SELECT uuid, direction, caller, first_seen_at, last_seen_at FROM cdr_listing "
        "ORDER BY call_time DESC, uuid LIMIT 3",
    ) == [
        ("e0e02f46-e43a-11e4-b73b-17aee3ce4e7b", "LOCAL", "1005", T0, T1),
        ("f35d3f92-e43a-11e4-b7e6-17aee3ce4e7b", "OUT", "1005", T0, T1),
        ("76a8a946-e43a-11e4-b5b4-17aee3ce4e7b", "IN", "90532xxxxxxx", T0, T0),
    ]


def test_high_water_mark_only_moves_forward(warehouse: Warehouse) -> None:
    assert warehouse.high_water_mark() is None
    warehouse.upsert_listing(normalize_listing(seed_listing()), seen_at=T0)
    newest = datetime(2015, 4, 16, 13, 17, tzinfo=UTC)
    assert warehouse.high_water_mark() == newest

    older = [{"uuid": "old", "call_time": "01-01-2015 10:00"}]
    result = warehouse.upsert_listing(normalize_listing(older), seen_at=T1)

    assert result.high_water_mark == newest
    assert warehouse.high_water_mark() == newest
    assert rows(warehouse, "SELECT value FROM _pipeline_state") == [("2015-04-16T13:17:00+00:00",)]


def test_high_water_mark_commits_with_the_listing_or_not_at_all(warehouse: Warehouse) -> None:
    listing = normalize_listing(seed_listing())
    # a reject with an unknown stage fails inside the transaction, after rows and mark
    listing.rejects.append(Reject("x", "nonsense", "?", None))

    with pytest.raises(ValueError, match="unknown reject stage"):
        warehouse.upsert_listing(listing, seen_at=T0)

    assert warehouse.high_water_mark() is None
    assert rows(warehouse, "SELECT count(*) FROM cdr_listing") == [(0,)]


def test_listing_rejects_are_written(warehouse: Warehouse) -> None:
    items = [*seed_listing(), {"uuid": "bad", "call_time": "31-02-2015 10:00"}]
    result = warehouse.upsert_listing(normalize_listing(items), seen_at=T0)
    assert (result.new, result.rejected) == (5, 1)
    assert rows(warehouse, "SELECT uuid, stage, reason FROM load_rejects") == [
        ("bad", "normalize", "call_time: unparseable time '31-02-2015 10:00'")
    ]


def _page(items: list[dict[str, Any]], page: int) -> Any:
    """One listing page as ``scan_listing`` stages it."""
    return normalize_listing(items).frame.assign(page=page)


def _count(wh: Warehouse, table: str) -> int:
    return int(rows(wh, f"SELECT count(*) FROM {table}")[0][0])


def test_staged_chunks_change_nothing_until_the_scan_finishes(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    items = seed_listing()
    stage = warehouse.begin_listing_scan()
    warehouse.stage_listing(stage, _page(items[:2], 1))
    warehouse.stage_listing(stage, _page(items[2:4], 2))

    assert (stage.staged_rows, stage.chunks) == (4, 2)
    assert _count(warehouse, "_cdr_listing_stage") == 4
    assert _count(warehouse, "cdr_listing") == 0 and warehouse.high_water_mark() is None

    result = warehouse.finish_listing_scan(stage, _page(items[4:], 3), seen_at=T0)

    assert (result.new, result.updated, result.unchanged, result.rejected) == (5, 0, 0, 0)
    assert result.days_touched == (date(2015, 4, 16),)
    assert result.high_water_mark == datetime(2015, 4, 16, 13, 17, tzinfo=UTC)
    assert _count(warehouse, "_cdr_listing_stage") == 0
    # exactly what one upsert of the whole listing makes
    whole = Warehouse(tmp_path / "whole.duckdb")
    whole.ensure_schema()
    whole.upsert_listing(normalize_listing(items), seen_at=T0)
    assert snapshot(warehouse) == snapshot(whole)


def test_a_uuid_on_two_pages_keeps_its_first_pages_row(warehouse: Warehouse) -> None:
    items = seed_listing()
    # The live list moved: the same call again further down, with other (newer) values.
    moved = {**items[0], "direction": "OUT", "call_time": "17-04-2015 10:00"}
    stage = warehouse.begin_listing_scan()
    warehouse.stage_listing(stage, _page(items[:3], 1))
    warehouse.stage_listing(stage, _page([moved, *items[3:]], 2))

    result = warehouse.finish_listing_scan(stage, seen_at=T0)

    first = normalize_listing(items[:1]).frame.iloc[0]
    assert result.new == 5
    assert rows(
        warehouse, "SELECT direction, call_time FROM cdr_listing WHERE uuid = ?", [first.uuid]
    ) == [(first.direction, first.call_time.to_pydatetime())]
    # the dropped copy moves neither the mark nor the days
    assert result.high_water_mark == datetime(2015, 4, 16, 13, 17, tzinfo=UTC)
    assert result.days_touched == (date(2015, 4, 16),)


def test_the_next_scan_clears_what_a_killed_scan_staged(warehouse: Warehouse) -> None:
    items = seed_listing()
    killed = warehouse.begin_listing_scan()
    warehouse.stage_listing(killed, _page(items, 1))
    # ...the process dies here, before finish_listing_scan; the next scan starts:
    rerun = warehouse.begin_listing_scan()

    assert rerun.cleared == 5 and _count(warehouse, "_cdr_listing_stage") == 0
    result = warehouse.finish_listing_scan(rerun, _page(items[:2], 1), seen_at=T1)
    assert (result.new, _count(warehouse, "cdr_listing")) == (2, 2)
    assert _count(warehouse, "_cdr_listing_stage") == 0


def test_a_scan_takes_a_turn_to_write_only_to_clear_what_a_killed_scan_staged(
    warehouse: Warehouse,
) -> None:
    # Accounts loading in threads into one DuckDB file write it in turns; a scan that
    # finds nothing staged writes nothing, so it must not wait for one.
    staged_at_turn: list[int] = []

    @contextmanager
    def turn() -> Iterator[None]:
        staged_at_turn.append(_count(warehouse, "_cdr_listing_stage"))
        yield

    def begin() -> listing_sql.ListingStage:
        return listing_sql.begin_listing_scan(
            warehouse.db, account=warehouse.account, write_turn=turn
        )

    first = begin()
    assert (staged_at_turn, first.cleared) == ([], 0)
    warehouse.stage_listing(first, _page(seed_listing(), 1))
    # ...killed here; the next scan clears the 5 rows, in a turn:
    rerun = begin()
    assert (staged_at_turn, rerun.cleared) == ([5], 5)
    assert _count(warehouse, "_cdr_listing_stage") == 0


def test_a_scan_whose_staged_rows_were_cleared_commits_nothing(warehouse: Warehouse) -> None:
    warehouse.upsert_listing(normalize_listing(seed_listing()[:1]), seen_at=T0)
    before = snapshot(warehouse)
    first = warehouse.begin_listing_scan()
    warehouse.stage_listing(first, _page(seed_listing(), 1))
    warehouse.begin_listing_scan()  # a second scan starts and clears the first one's rows

    with pytest.raises(WarehouseError, match="another listing scan started"):
        warehouse.finish_listing_scan(first, _page(seed_listing()[:1], 2), seen_at=T1)

    assert snapshot(warehouse) == before
    assert _count(warehouse, "_cdr_listing_stage") == 0


def test_pending_uuids_and_dates(warehouse: Warehouse) -> None:
    items = [
        *seed_listing(),  # 16 April 2015
        {"uuid": "winter", "call_time": "15-01-2015 10:00"},
        # 23:30 local on 30 April is 20:30 UTC: the local date counts
        {"uuid": "late", "call_time": "30-04-2015 23:30"},
    ]
    warehouse.upsert_listing(normalize_listing(items), seen_at=T0)
    loaded = seed_listing()[0]
    load(warehouse, [loaded])
    warehouse.add_rejects([Reject(seed_listing()[1]["uuid"], "detail", "HTTP 404", None)])
    april = (date(2015, 4, 1), date(2015, 4, 30))

    assert warehouse.pending_uuids(*april) == [
        "6930557a-e43a-11e4-b591-17aee3ce4e7b",  # 16:13
        "76a8a946-e43a-11e4-b5b4-17aee3ce4e7b",  # 16:14
        "78e057d6-e43a-11e4-b5d7-17aee3ce4e7b",  # 16:14
        "late",
    ]
    assert warehouse.pending_uuids(date(2015, 4, 17), date(2015, 4, 29)) == []
    assert len(warehouse.pending_uuids(*april, refetch=True)) == 6
    assert warehouse.pending_dates() == [date(2015, 1, 15), date(2015, 4, 16), date(2015, 4, 30)]


# --- failures -------------------------------------------------------------------------------


def test_exception_inside_a_transaction_rolls_back(warehouse: Warehouse) -> None:
    load(warehouse, [seed_detail()])
    before = snapshot(warehouse)

    with pytest.raises(RuntimeError, match="boom"), warehouse.transaction() as con:
        con.execute("DELETE FROM originations")
        con.execute("UPDATE cdrs SET caller = 'changed'")
        raise RuntimeError("boom")

    assert snapshot(warehouse) == before


def test_database_error_mid_load_rolls_back_and_raises_warehouse_error(
    warehouse: Warehouse,
) -> None:
    load(warehouse, [seed_detail()])
    before = snapshot(warehouse)
    changed = seed_detail()
    changed["hangup_cause"] = "Meşgul"
    # a NULL where cdrs has NOT NULL: the raw upsert succeeds, the cdrs update fails
    normalized = normalize_details([changed])
    normalized.cdrs.loc[0, "call_date"] = None

    with pytest.raises(WarehouseError) as info:
        warehouse.load_details([(UUID, changed)], normalized, fetched_at=T1)

    assert "\n" not in str(info.value) and warehouse.location in str(info.value)
    assert re.search("not.null", str(info.value), re.IGNORECASE)
    assert snapshot(warehouse) == before


def test_a_raw_payload_that_is_not_json_is_refused_before_any_write(
    warehouse: Warehouse,
) -> None:
    load(warehouse, [seed_detail()])
    before = snapshot(warehouse)
    # DuckDB does not parse the payloads again (they reach it as Arrow's JSON type), so
    # text from a caller is checked here
    with pytest.raises(WarehouseError, match=rf"raw payload of {UUID} is not JSON"):
        warehouse.load_details(
            [(UUID, "{not json")], normalize_details([seed_detail()]), fetched_at=T1
        )
    assert snapshot(warehouse) == before


def test_read_only_database_raises_warehouse_error(duckdb_warehouse: Warehouse) -> None:
    warehouse = duckdb_warehouse
    load(warehouse, [seed_detail()])
    before = snapshot(warehouse)

    @contextmanager
    def read_only() -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(str(warehouse.path), read_only=True)
        try:
            yield con
        finally:
            con.close()

    frozen = Warehouse(warehouse.path, connect=read_only)
    with pytest.raises(WarehouseError, match="read-only"):
        frozen.load_details([], normalize_details(seed_listing()), fetched_at=T1)
    assert snapshot(warehouse) == before


# --- another process holding the file ---------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()
    con.close()
    print("released", flush=True)
    """
)


@contextmanager
def lock_holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=30)


def test_waits_while_another_process_holds_the_lock(duckdb_warehouse: Warehouse) -> None:
    warehouse = duckdb_warehouse
    assert isinstance(warehouse.db, DuckDB)
    waits: list[float] = []
    with lock_holder(warehouse.path) as holder:
        assert holder.stdin is not None and holder.stdout is not None

        def release_on_first_wait(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 1:  # we were refused the lock: let the holder go, wait for it
                holder.stdin.write("\n")  # type: ignore[union-attr]
                holder.stdin.flush()  # type: ignore[union-attr]
                assert holder.stdout.readline().strip() == "released"  # type: ignore[union-attr]

        warehouse.db.sleep = release_on_first_wait
        result = load(warehouse, [seed_detail()])

    assert result.new == 1
    assert len(waits) == 1
    assert rows(warehouse, "SELECT count(*) FROM cdrs") == [(1,)]


def test_gives_up_after_the_lock_timeout(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=0.2)
    wh.ensure_schema()
    with lock_holder(wh.path), pytest.raises(WarehouseLockedError, match="locked by another"):
        wh.high_water_mark()


def test_naive_times_are_refused(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        warehouse.upsert_listing(normalize_listing([]), seen_at=datetime(2024, 1, 1))


def test_load_details_accepts_json_text_payloads(warehouse: Warehouse) -> None:
    payload = seed_detail()
    # As received: key order, spacing, escapes and a repeated key all kept.
    text = json.dumps({"cdr": payload, "b": 1, "a": "\u00e7"}, indent=1)[:-1] + ', "b": 2}'
    warehouse.load_details([(UUID, text)], normalize_details([payload]), fetched_at=T0)
    assert rows(warehouse, "SELECT CAST(payload AS VARCHAR) FROM raw_cdr_details") == [(text,)]
    assert warehouse.raw_payloads([UUID], limit=1) == [(UUID, text)]
    assert json.loads(text)["cdr"]["uuid"] == UUID


def test_unchanged_copy_of_payload_is_not_mutated(warehouse: Warehouse) -> None:
    payload = seed_detail()
    original = copy.deepcopy(payload)
    load(warehouse, [payload])
    assert payload == original


# --- recordings ----------------------------------------------------------------------------


def test_recording_rows_candidates_rejects_and_purge(warehouse: Warehouse) -> None:
    load(warehouse, [seed_detail()])  # has a recording ("Var"), 16 April 2015
    day = date(2015, 4, 16)
    (candidate,) = warehouse.recording_candidates(day, day)
    assert (candidate.uuid, candidate.call_record, candidate.has_recording) == (UUID, "Var", True)
    assert candidate.stored is None

    warehouse.save_recordings([], [Reject(UUID, "recording", "HTTP 500", None)])
    assert warehouse.recording_candidates(day, day) == []  # a reject leaves it out...
    assert len(warehouse.recording_candidates(day, day, refetch=True)) == 1  # ...but refetch

    row = RecordingRow(UUID, f"recordings/2015/04/16/{UUID}.wav", "audio/wav", 12, "ab", T0)
    warehouse.save_recordings([row], [])
    (candidate,) = warehouse.recording_candidates(day, day)
    assert candidate.stored == row  # and the reject is gone
    assert rows(warehouse, "SELECT count(*) FROM load_rejects") == [(0,)]
    warehouse.save_recordings([row], [])  # idempotent
    assert rows(warehouse, "SELECT count(*) FROM call_recordings") == [(1,)]

    assert warehouse.delete_recordings_before(day) == []
    assert warehouse.delete_recordings_before(date(2015, 4, 17)) == [row.path]
    assert rows(warehouse, "SELECT count(*) FROM call_recordings") == [(0,)]


def test_raw_payloads_pages_through_by_uuid(warehouse: Warehouse) -> None:
    payloads = [seed_detail(), *seed_listing()]
    load(warehouse, payloads)
    uuids = sorted(p["uuid"] for p in payloads)
    first = warehouse.raw_payloads(limit=2)
    assert [u for u, _ in first] == uuids[:2]
    rest = warehouse.raw_payloads(after=first[-1][0], limit=10)
    assert [u for u, _ in rest] == uuids[2:]
    chosen = warehouse.raw_payloads([uuids[3], uuids[1], "missing"], limit=10)
    assert [u for u, _ in chosen] == [uuids[1], uuids[3]]
    assert json.loads(chosen[0][1])["uuid"] == uuids[1]
    assert warehouse.raw_payloads([uuids[3], uuids[1]], after=uuids[1], limit=10)[0][0] == uuids[3]
