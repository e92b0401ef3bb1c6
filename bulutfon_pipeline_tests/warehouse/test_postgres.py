"""What only the PostgreSQL backend has, on a real server: its catalog (types, keys,
schema), payloads byte-exact as received, the advisory sync lock, the URL's password kept
out of every message, and the same data as DuckDB for the same loads."""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from bulutfon_pipeline.faults import FAIL_ENV
from bulutfon_pipeline.normalize import Reject, normalize_details, normalize_listing
from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.warehouse import Warehouse, WarehouseError, WarehouseLockedError, schema
from bulutfon_pipeline.warehouse.backend import json_array
from bulutfon_pipeline.warehouse.change_log import changes_since
from bulutfon_pipeline.warehouse.integrity import integrity_counts
from bulutfon_pipeline.warehouse.postgres_backend import Postgres
from bulutfon_pipeline.warehouse.postgres_text import (
    _columns_copy,
    _pgpq_copy,
    binary_copy,
    to_pyformat,
)
from bulutfon_pipeline.warehouse.postgres_wait import SWITCH_INTERVAL_S
from bulutfon_pipeline_tests.fixtures import load_fixture
from bulutfon_pipeline_tests.helpers import read_table
from bulutfon_pipeline_tests.postgres import PostgresServer
from bulutfon_pipeline_tests.warehouse.test_loader import snapshot

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
TZ = "timestamp with time zone"
VC = "character varying"

#: information_schema.columns.data_type of every column, as the issue asks: numbers as
#: text, timestamptz, date, boolean, raw payloads as json (never jsonb); ``account`` first
#: in every table but ``_views_state``.
EXPECTED_TYPES = {
    "cdr_listing": [VC, VC, TZ, "date", VC, VC, VC, TZ, TZ],
    "_cdr_listing_stage": [VC, VC, "integer", VC, TZ, "date", VC, VC, VC],
    "cdrs": [VC, VC, VC, VC, VC, VC, VC, TZ, TZ, TZ, "date", "boolean", "integer", "integer", VC,
             "boolean", VC, VC, VC, VC, "boolean", "numeric", TZ],
    "call_flow_steps": [VC, "character varying", "integer", VC, TZ, TZ, TZ, VC, VC, VC],
    "originations": [VC, VC, "integer", "integer", VC, TZ, TZ, TZ, VC, VC, "boolean"],
    "raw_cdr_details": [VC, VC, TZ, "json"],
    "load_rejects": [VC, VC, VC, VC, VC, TZ],
    "call_recordings": [VC, VC, VC, VC, "bigint", VC, TZ],
    "cdr_changes": [VC, VC, "date", VC, VC, VC, TZ, TZ],
    "_cdr_refetch": [VC, VC, "date", VC, TZ],
    "_pipeline_state": [VC, VC, VC, TZ],
    "_views_state": [VC, VC, TZ],
    "extensions": [VC, VC, TZ, TZ, VC, VC, VC, VC, "boolean", VC, VC, VC, VC, VC],
    "ring_groups": [VC, VC, TZ, TZ, VC, VC, "integer", "integer", "integer"],
    "ring_group_members": [VC, VC, VC, TZ, TZ, VC],
    "phone_numbers": [VC, VC, TZ, TZ, VC, VC, VC, VC, VC, "boolean"],
    "phone_number_hours": [VC, VC, TZ, TZ, "integer", "boolean", *["time without time zone"] * 4],
    "alembic_version": [VC],  # Alembic's own (the migrations)
}  # fmt: skip


def _catalog(server: PostgresServer, url: str, sql: str) -> list[tuple[Any, ...]]:
    database = url.split("/")[3].split("?")[0]
    with psycopg.connect(server.conninfo(database)) as con:
        return con.execute(sql).fetchall()  # type: ignore[arg-type]


def test_tables_types_and_keys_come_from_the_metadata(
    postgres_server: PostgresServer, postgres_warehouse: Warehouse, postgres_url: str
) -> None:
    columns = _catalog(
        postgres_server,
        postgres_url,
        "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema = 'warehouse' "
        "AND table_name IN (SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'warehouse' AND table_type = 'BASE TABLE') "
        "ORDER BY table_name, ordinal_position",
    )
    described: dict[str, list[str]] = {}
    for table, column, data_type, precision, scale in columns:
        described.setdefault(table, []).append(data_type)
        if data_type == "numeric":
            assert (table, column, precision, scale) == ("cdrs", "call_price", 12, 4)
    assert described == EXPECTED_TYPES
    names = {t.name: [c.name for c in t.columns] for t in schema.metadata.sorted_tables}
    assert {t: [c for (tt, c, *_) in columns if tt == t] for t in names} == names
    # Every declared key is a PRIMARY KEY constraint here (DuckDB leaves four out).
    keys = _catalog(
        postgres_server,
        postgres_url,
        "SELECT tc.table_name, array_agg(k.column_name::text ORDER BY k.ordinal_position) "
        "FROM information_schema.table_constraints AS tc "
        "JOIN information_schema.key_column_usage AS k "
        "  ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema "
        "WHERE tc.table_schema = 'warehouse' AND tc.constraint_type = 'PRIMARY KEY' "
        "GROUP BY tc.table_name",
    )
    declared = {t.name: schema.key_columns(t) for t in schema.metadata.sorted_tables}
    declared["alembic_version"] = ["version_num"]
    assert dict(keys) == {t: k for t, k in declared.items() if k}
    # Nothing in the public schema: the tables live in BULUTFON_WAREHOUSE_SCHEMA.
    public = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    assert _catalog(postgres_server, postgres_url, public) == [(0,)]


def test_ensure_schema_is_idempotent(postgres_warehouse: Warehouse) -> None:
    postgres_warehouse.upsert_listing(
        normalize_listing(load_fixture("seed_cdr_list.json")["cdrs"]), seen_at=T0
    )
    before = snapshot(postgres_warehouse)
    postgres_warehouse.ensure_schema()
    assert snapshot(postgres_warehouse) == before


def test_raw_payload_text_is_byte_exact_after_a_round_trip(
    postgres_server: PostgresServer, postgres_warehouse: Warehouse, postgres_url: str
) -> None:
    detail = load_fixture("seed_cdr_detail.json")["cdr"]
    # Unordered keys, odd spacing, escapes, a repeated key: jsonb would change all four.
    text = (
        '{"z": 1,  "a" : [1, 2.50, 1e3], "cdr": '
        + json.dumps(detail, ensure_ascii=False)
        + ', "esc": "\\u00e7\\n", "z": 2}'
    )
    # A payload long enough for the server to compress it (with lz4, see connect()).
    long_detail = {**detail, "uuid": "long-payload"}
    long_text = json.dumps({**long_detail, "pad": "ab" * 3000}, ensure_ascii=False)
    postgres_warehouse.load_details(
        [(detail["uuid"], text), ("long-payload", long_text)],
        normalize_details([detail, long_detail]),
        fetched_at=T0,
    )
    assert postgres_warehouse.raw_payloads(limit=5) == sorted(
        [(detail["uuid"], text), ("long-payload", long_text)]
    )
    stored = _catalog(
        postgres_server,
        postgres_url,
        "SELECT payload::text, pg_typeof(payload)::text, pg_column_compression(payload) "
        "FROM warehouse.raw_cdr_details ORDER BY uuid",
    )
    assert sorted(stored) == sorted([(text, "json", None), (long_text, "json", "lz4")])


def test_the_same_loads_give_the_same_rows_as_duckdb(
    postgres_warehouse: Warehouse, postgres_url: str, tmp_path: Path
) -> None:
    duck = Warehouse(tmp_path / "w.duckdb")
    duck.ensure_schema()
    listing = load_fixture("seed_cdr_list.json")["cdrs"]
    detail = load_fixture("seed_cdr_detail.json")["cdr"]
    v1 = load_fixture("v1_cdr_detail.json")["cdr"]
    changed = {**v1, "call_record": "REMOVED", "call_price": "0.0300"}
    payloads = [detail, *listing, {"uuid": "broken", "call_time": "31-02-2015 10:00"}]
    for wh in (duck, postgres_warehouse):
        wh.upsert_listing(normalize_listing(listing), seen_at=T0)
        gone = [Reject("gone", "detail", "404", None)]
        raw = [(p["uuid"], p) for p in payloads]
        wh.load_details(raw, normalize_details(payloads), fetched_at=T0, detail_rejects=gone)
        wh.load_details([(v1["uuid"], v1)], normalize_details([v1]), fetched_at=T0)
        wh.load_details([(v1["uuid"], changed)], normalize_details([changed]), fetched_at=T1)
    skip = ("cdrs.loaded_at", "load_rejects.rejected_at", "_pipeline_state.updated_at")
    got, want = snapshot(postgres_warehouse, skip=skip), snapshot(duck, skip=skip)
    assert got == want
    assert len(got["cdrs"]) == 6 and len(got["load_rejects"]) == 2
    audit = "SELECT uuid, field, old_value, new_value, seen_at FROM cdr_changes ORDER BY 1, 2, 3"
    changes = [duck_rows(wh, audit) for wh in (postgres_warehouse, duck)]
    assert changes[0] == changes[1] and len(changes[0]) >= 3
    assert postgres_warehouse.pending_dates() == duck.pending_dates()
    # The checks' integrity counts, and the change log, agree too.
    lookback = timedelta(hours=1)
    counts = integrity_counts(postgres_warehouse, lookback=lookback)
    assert counts == integrity_counts(duck, lookback=lookback)
    assert counts.duplicate_keys == dict.fromkeys(counts.duplicate_keys, 0)
    assert counts.rejected_calls == 2
    assert changes_since(postgres_warehouse, T1) == changes_since(duck, T1) != []
    # The test helpers read either backend.
    for table in (schema.cdrs, schema.call_flow_steps, schema.originations, schema.load_rejects):
        columns = [c.name for c in table.columns if c.name not in ("loaded_at", "rejected_at")]
        got_rows = read_table((postgres_url, "warehouse"), table.name, columns)
        assert got_rows == read_table(duck.path, table.name, columns) and got_rows


def duck_rows(wh: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    with wh.transaction() as tx:
        return tx.execute(sql).fetchall()


def test_the_keys_are_enforced(postgres_warehouse: Warehouse) -> None:
    detail = load_fixture("seed_cdr_detail.json")["cdr"]
    postgres_warehouse.load_details(
        [(detail["uuid"], detail)], normalize_details([detail]), fetched_at=T0
    )
    with (
        pytest.raises(WarehouseError, match="duplicate key"),
        postgres_warehouse.transaction() as tx,
    ):
        tx.execute("INSERT INTO call_flow_steps SELECT * FROM call_flow_steps WHERE step_index = 1")


@pytest.mark.parametrize("point", ["before_watermark_commit"])
def test_a_write_failure_leaves_the_last_committed_state(
    postgres_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    listing = load_fixture("seed_cdr_list.json")["cdrs"]
    postgres_warehouse.upsert_listing(normalize_listing(listing[:2]), seen_at=T0)
    before = snapshot(postgres_warehouse)
    mark = postgres_warehouse.high_water_mark()
    monkeypatch.setenv(FAIL_ENV, point)
    with pytest.raises(WarehouseError, match="No space left on device"):
        postgres_warehouse.upsert_listing(normalize_listing(listing), seen_at=T1)
    monkeypatch.delenv(FAIL_ENV)
    # Rows and the high-water mark were one transaction: neither moved.
    assert snapshot(postgres_warehouse) == before
    assert postgres_warehouse.high_water_mark() == mark
    result = postgres_warehouse.upsert_listing(normalize_listing(listing), seen_at=T1)
    assert (result.new, result.unchanged) == (3, 2)


def test_a_detail_write_failure_loses_and_duplicates_nothing(
    postgres_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    detail = load_fixture("seed_cdr_detail.json")["cdr"]
    raw, normalized = [(detail["uuid"], detail)], normalize_details([detail])
    monkeypatch.setenv(FAIL_ENV, "details_write")
    with pytest.raises(WarehouseError, match="No space left on device"):
        postgres_warehouse.load_details(raw, normalized, fetched_at=T0)
    monkeypatch.delenv(FAIL_ENV)
    assert all(rows == [] for rows in snapshot(postgres_warehouse).values())
    assert postgres_warehouse.load_details(raw, normalized, fetched_at=T0).new == 1


def test_a_thread_waiting_on_the_server_lowers_the_switch_interval_until_its_reply(
    postgres_url: str,
) -> None:
    """``postgres_wait``: while a thread waits on the server (here for an advisory lock the
    test holds), the interpreter's switch interval is 0.5 ms, so that the thread takes the
    GIL back soon after the reply; it comes back with the reply."""
    db = Postgres(postgres_url)
    before = sys.getswitchinterval()
    assert before > SWITCH_INTERVAL_S
    holder, waiter = db.connect(), db.connect()
    try:
        holder.execute("SELECT pg_advisory_lock(4242)")
        assert sys.getswitchinterval() == before
        thread = threading.Thread(target=lambda: waiter.execute("SELECT pg_advisory_lock(4242)"))
        thread.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE objid = 4242 AND NOT granted"
        deadline = time.monotonic() + 30
        while holder.execute(waiting).fetchone() != (1,):  # the server sees the thread wait
            assert time.monotonic() < deadline
        assert sys.getswitchinterval() == SWITCH_INTERVAL_S
        holder.execute("SELECT pg_advisory_unlock(4242)")
        thread.join(30)
        assert not thread.is_alive()
        assert sys.getswitchinterval() == before
    finally:
        holder.close()
        waiter.close()


# --- the advisory sync lock ------------------------------------------------------------------


def test_a_second_holder_waits_then_gives_up(postgres_url: str) -> None:
    first, second = Postgres(postgres_url, schema="a"), Postgres(postgres_url, schema="a")
    waits: list[str] = []
    slept: list[float] = []
    second.sleep = slept.append  # no real waiting: the deadline passes on the clock
    with (
        first.advisory_lock(5.0),
        pytest.raises(WarehouseLockedError, match="locked by another sync") as info,
        second.advisory_lock(0.0, waits.append),
    ):
        pytest.fail("the lock was held by another session")
    assert len(waits) == 1
    assert waits[0].startswith("waiting for another sync to finish on ")
    assert "pid " in waits[0] and "bulutfon_pipeline" in waits[0]
    assert "pid " in str(info.value)
    # Released with the block: the second gets it at once, without waiting.
    with second.advisory_lock(0.0, waits.append):
        pass
    assert len(waits) == 1


def test_a_waiting_holder_gets_the_lock_when_the_first_lets_go(postgres_url: str) -> None:
    first, second = Postgres(postgres_url, schema="a"), Postgres(postgres_url, schema="a")
    other_schema = Postgres(postgres_url, schema="b")
    held = ExitStack()
    held.enter_context(first.advisory_lock(5.0))
    waits: list[str] = []
    second.sleep = lambda _s: held.close()  # the first sync ends while the second waits
    with other_schema.advisory_lock(0.0), second.advisory_lock(30.0, waits.append):
        entered = True
    assert entered and len(waits) == 1  # another schema's lock is another lock


# --- settings, names, secrets -----------------------------------------------------------------


def test_from_settings_picks_the_backend_and_hides_the_password(
    postgres_url: str, tmp_path: Path
) -> None:
    duck = Warehouse.from_settings(Settings(duckdb_path=tmp_path / "w.duckdb"))
    assert (duck.is_server, duck.location, duck.path) == (False, str(tmp_path / "w.duckdb"),
                                                         tmp_path / "w.duckdb")  # fmt: skip
    with_password = postgres_url.replace("postgres@", "postgres:s3cret-pw@")
    wh = Warehouse.from_settings(Settings(warehouse_url=with_password, warehouse_schema="calls"))
    assert wh.is_server
    wh.ensure_schema()  # trust authentication: the password is not checked
    wh.upsert_listing(normalize_listing(load_fixture("seed_cdr_list.json")["cdrs"]), seen_at=T0)
    assert wh.high_water_mark() == datetime(2015, 4, 16, 13, 17, tzinfo=UTC)
    assert "s3cret-pw" not in wh.location and "***" in wh.location
    assert "schema calls" in wh.location and "s3cret-pw" not in repr(wh)
    with pytest.raises(WarehouseError, match="is a server") as info:
        _ = wh.path
    assert "s3cret-pw" not in str(info.value)
    with pytest.raises(WarehouseError) as failed, wh.transaction() as tx:
        tx.execute("SELECT no_such_column FROM cdrs")
    assert "s3cret-pw" not in str(failed.value) and "no_such_column" in str(failed.value)


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://loader:s3cret-pw@/calls?host={tmp_path}&port=1"
    with pytest.raises(WarehouseError, match="cannot open warehouse") as info:
        Warehouse.on(Postgres(url)).ensure_schema()
    message = str(info.value)
    assert "s3cret-pw" not in message and "\n" not in message and "***" in message


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # a placeholder becomes psycopg's, a literal % is doubled
        ("SELECT ? WHERE a LIKE '%x'", "SELECT %s WHERE a LIKE '%%x'"),
        # a ? inside quoted text or an identifier is not a placeholder
        ("SELECT '?', \"a?\" FROM t WHERE b = ?", "SELECT '?', \"a?\" FROM t WHERE b = %s"),
        # nor inside a comment
        ("SELECT 1 -- why?\nWHERE c = ?", "SELECT 1 -- why?\nWHERE c = %s"),
        # a doubled quote inside text stays text
        ("SELECT 'it''s ?' , ?", "SELECT 'it''s ?' , %s"),
    ],
)
def test_placeholders_become_psycopgs(sql: str, expected: str) -> None:
    assert to_pyformat(sql) == expected


def test_batches_arrive_exactly_through_binary_copy(postgres_url: str) -> None:
    # Every type the binary COPY encodes, with NULLs, an empty string, quoting and
    # non-ASCII text, integer bounds, instants and dates on both sides of 2000-01-01
    # (PostgreSQL's epoch), decimals.
    at = [
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
        None,
        datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC),
        datetime(1, 1, 2, tzinfo=UTC),
    ]
    day = [date(1999, 12, 31), date(2000, 1, 1), None, date(2024, 2, 29), date(1, 1, 1)]
    columns: dict[str, list[Any]] = {
        "text": ["a", "", None, "çğü 😀", 'q " , \\ \n\t'],
        "payload": ['{"b": 1, "a": [1.50]}', "[]", "null", '"x"', '{"z":{}}'],
        "big": [2**62, -1, None, 0, 7],
        "small": [2**31 - 1, -(2**31), None, 0, 1],
        "tiny": [2**15 - 1, -(2**15), None, 0, 1],
        "flag": [True, False, None, True, False],
        "at": at,
        "day": day,
        "nothing": [None] * 5,
    }
    batch = pa.table(
        {
            "text": pa.array(columns["text"], pa.string()),
            "payload": json_array(columns["payload"]),
            "big": pa.array(columns["big"], pa.int64()),
            "small": pa.array(columns["small"], pa.int32()),
            "tiny": pa.array(columns["tiny"], pa.int16()),
            "flag": pa.array(columns["flag"], pa.bool_()),
            "at": pa.array(at, pa.timestamp("us", "UTC")),
            "day": pa.array(day, pa.date32()),
            "nothing": pa.nulls(5),
        }
    )
    assert binary_copy(batch) is not None
    price = [Decimal("1.2500"), None, Decimal("-99999999.9999"), Decimal("0.0182"), Decimal(0)]
    whole = [Decimal(1), None, Decimal(-99_999_999), Decimal(0), Decimal(123_456_789)]
    prices = pa.table(
        {
            "price": pa.array(price, pa.decimal128(12, 4)),
            "whole": pa.array(whole, pa.decimal128(9, 0)),
        }
    )
    assert binary_copy(prices) is not None
    # pgpq's encoder (short fields) and ours (long ones) write the same bytes, bar the
    # count of numeric digits (pgpq drops the trailing zero ones): the prices are loaded
    # by each below
    widths = {"big": 8, "small": 4, "tiny": 2}
    assert _pgpq_copy(batch, widths) == _columns_copy(batch, widths) is not None
    ours_prices = _columns_copy(prices, {})
    assert binary_copy(pa.table({"x": pa.array([1.5])})) is None  # a float: CSV
    # a value beyond the column's integer type: CSV, so that the server's own error shows
    assert binary_copy(pa.table({"n": pa.array([2**40])}), {"n": 4}) is None
    with Postgres(postgres_url).transaction() as tx, tx.batches(b=batch, p=prices):
        rows = tx.execute(f"SELECT {', '.join(columns)} FROM b").fetchall()
        types = tx.execute(
            "SELECT pg_typeof(payload)::text, pg_typeof(small)::text FROM b"
        ).fetchone()
        stored_prices = tx.execute("SELECT price::text, whole::text FROM p").fetchall()
        tx.execute("CREATE TEMP TABLE q (price numeric(12, 4), whole numeric(9, 0))")
        with tx.con.cursor().copy("COPY q (price, whole) FROM STDIN (FORMAT binary)") as copy:
            copy.write(ours_prices or b"")
        assert tx.execute("SELECT price::text, whole::text FROM q").fetchall() == stored_prices
    assert rows == list(zip(*columns.values(), strict=True))
    assert types == ("json", "integer")
    assert stored_prices == [("1.2500", "1"), (None, None), ("-99999999.9999", "-99999999"),
                             ("0.0182", "0"), ("0.0000", "123456789")]  # fmt: skip
