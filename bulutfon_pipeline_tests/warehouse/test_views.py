"""Reporting views over a small hand-made set of calls, exact values."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline.normalize import normalize_details
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.schema_setup import VIEWS_FINGERPRINT_KEY, views_fingerprint
from bulutfon_pipeline.warehouse.views import VIEWS, ViewDefinition, view_names
from bulutfon_pipeline_tests.fixtures import load_fixture
from bulutfon_pipeline_tests.fixtures.marts import insert_calls

#: The marts of the release before the directory, as that release created them.
MARTS_BEFORE_DIRECTORY = (
    Path(__file__).parents[1] / "fixtures" / "marts_before_directory.sql"
).read_text(encoding="utf-8")

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def warehouse(duckdb_warehouse: Warehouse) -> Warehouse:
    """DuckDB only until the views' SQL is portable (views.py)."""
    return duckdb_warehouse


def call(uuid: str, direction: str, answer: str | None, hangup: str, **extra: Any) -> dict:
    return {
        "uuid": uuid,
        "direction": direction,
        "call_time": "16-04-2015 11:00",
        "answer_time": answer,
        "hangup_time": hangup,
        **extra,
    }


@pytest.fixture
def loaded(warehouse: Warehouse) -> Warehouse:
    seed = load_fixture("seed_cdr_detail.json")["cdr"]  # IN, ring 0 s, talk 120 s, group 101
    payloads = [
        seed,
        call("in-1", "IN", "16-04-2015 11:01", "16-04-2015 11:11"),  # ring 60, talk 600
        call("in-2", "IN", None, "16-04-2015 11:02"),  # missed, ring 120
        call("out-1", "OUT", "16-04-2015 11:00", "16-04-2015 11:01"),  # ring 0, talk 60
        call("next-day", "IN", None, "17-04-2015 09:00", call_time="17-04-2015 08:59"),
    ]
    # a second call rang group 101: 1008 answered this time, 1004 lost the race
    group_call = call("in-3", "IN", "16-04-2015 11:00", "16-04-2015 11:03")
    group_call["call_flow"] = [
        {
            "callee": "101",
            "start_time": "16/04/2015 - 11:00:01",
            "redirection": "Gruba bağlanılıyor",
            "origination": [
                {"destination": "1004", "start_time": "16/04/2015 - 11:00:01",
                 "result": "Başkası açtı"},
                {"destination": "1008", "start_time": "16/04/2015 - 11:00:01",
                 "result": "Cevapladı"},
            ],
        }
    ]  # fmt: skip
    payloads.append(group_call)
    normalized = normalize_details(payloads)
    assert normalized.rejects == []
    warehouse.load_details([], normalized, fetched_at=T0)
    return warehouse


def test_daily_call_summary(loaded: Warehouse) -> None:
    with loaded.transaction() as con:
        got = con.execute(
            "SELECT * EXCLUDE (account) FROM daily_call_summary ORDER BY call_date, direction"
        )
        rows = got.fetchall()
    assert rows == [
        # 16 April IN: seed(0/120), in-1(60/600), in-2(missed, ring 120), in-3(0/180)
        (date(2015, 4, 16), "IN", 4, 3, 1, 0.75, 45.0, pytest.approx(102.0), 300.0,
         pytest.approx(516.0)),
        (date(2015, 4, 16), "OUT", 1, 1, 0, 1.0, 0.0, 0.0, 60.0, 60.0),
        (date(2015, 4, 17), "IN", 1, 0, 1, 0.0, 60.0, 60.0, None, None),
    ]  # fmt: skip


def test_ring_group_performance(loaded: Warehouse) -> None:
    frame = loaded.fetch_frame(
        "SELECT * EXCLUDE (account) FROM ring_group_performance ORDER BY ring_group, destination"
    )
    # no directory loaded: no names (ring_group_name, destination_name NULL)
    assert [tuple(row) for row in frame.itertuples(index=False)] == [
        ("101", None, "1004", None, 2, 1, 1, 0.5),
        ("101", None, "1008", None, 2, 1, 1, 0.5),
        ("101", None, "1009", None, 1, 0, 1, 0.0),
        ("101", None, "1015", None, 1, 0, 1, 0.0),
    ]


def test_views_list_is_extensible(warehouse: Warehouse) -> None:
    extra = ViewDefinition("calls_per_direction", "test", "SELECT direction, count(*) AS n "
                           "FROM cdrs GROUP BY direction")  # fmt: skip
    VIEWS.append(extra)
    try:
        warehouse.ensure_schema()
        assert warehouse.fetch_frame("SELECT * FROM calls_per_direction").empty
    finally:
        VIEWS.remove(extra)
    assert view_names() == [
        "daily_call_summary",
        "ring_group_performance",
        "hourly_call_load",
        "extension_activity",
        "missed_calls",
        "working_hours_service_level",
    ]


def test_ddl_per_dialect() -> None:
    portable = ViewDefinition("v", "test", "SELECT 1 AS one")
    assert (
        portable.ddl() == portable.ddl("duckdb") == "CREATE OR REPLACE VIEW v AS\nSELECT 1 AS one"
    )
    assert portable.ddl("postgresql") == portable.ddl("duckdb")
    # a view that cannot be written in common SQL gives PostgreSQL its own query
    variant = ViewDefinition("v", "test", "SELECT 1 AS one", postgres_select="SELECT 2 AS one")
    assert variant.ddl() == "CREATE OR REPLACE VIEW v AS\nSELECT 1 AS one"
    assert variant.ddl("postgresql") == "CREATE OR REPLACE VIEW v AS\nSELECT 2 AS one"
    with pytest.raises(ValueError, match="unknown SQL dialect 'sqlite'"):
        variant.ddl("sqlite")  # type: ignore[arg-type]


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_view_ddl_has_no_percent_sign(dialect: str) -> None:
    # psycopg reads a percent sign as a placeholder when a statement is sent with
    # parameters (SQLAlchemy's exec_driver_sql does), even inside a comment or a string
    for view in VIEWS:
        assert "%" not in view.ddl(dialect), view.name  # type: ignore[arg-type]


def _columns(wh: Warehouse, view: str) -> list[str]:
    return list(wh.fetch_frame(f"SELECT * FROM {view} WHERE false").columns)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_warehouse_with_the_previous_marts_gets_this_releases(
    backend: str, request: pytest.FixtureRequest
) -> None:
    # The previous release's five marts and their fingerprint, as its ensure_schema left
    # them: this release's marts add, move and insert columns (PostgreSQL's CREATE OR
    # REPLACE VIEW can do neither) and a sixth view. ensure_schema replaces them all.
    wh: Warehouse = request.getfixturevalue(f"{backend}_warehouse")
    body = "\n".join(
        line for line in MARTS_BEFORE_DIRECTORY.splitlines() if not line.startswith("--")
    )
    statements = [s.strip() for s in re.split(r";\s*$", body, flags=re.MULTILINE) if s.strip()]
    old_fingerprint = hashlib.sha256(b"".join(s.encode() + b"\0" for s in statements)).hexdigest()
    with wh.transaction() as con:
        for view in reversed(view_names()):
            con.execute(f"DROP VIEW IF EXISTS {view}")
        for statement in statements:
            con.execute(statement)
        con.execute(
            "UPDATE _views_state SET fingerprint = ? WHERE key = ?",
            [old_fingerprint, VIEWS_FINGERPRINT_KEY],
        )
    insert_calls(wh)
    assert _columns(wh, "extension_activity")[:3] == ["account", "extension", "rings"]
    assert "in_working_hours" not in _columns(wh, "missed_calls")

    wh.ensure_schema()

    assert _columns(wh, "extension_activity")[:4] == [
        "account", "extension", "extension_name", "rings",
    ]  # fmt: skip
    assert _columns(wh, "ring_group_performance")[:5] == [
        "account", "ring_group", "ring_group_name", "destination", "destination_name",
    ]  # fmt: skip
    assert _columns(wh, "missed_calls")[-1] == "in_working_hours"
    # the rows of test_marts.py's hand count, now with their names
    with wh.transaction() as con:
        names = con.execute(
            "SELECT extension, extension_name, rings FROM extension_activity "
            "ORDER BY extension, extension_name"
        ).fetchall()
        service = con.execute(
            "SELECT number, sum(calls) FROM working_hours_service_level GROUP BY number"
        ).fetchall()
    assert [tuple(row) for row in names] == [
        ("1004", "Ayşe", 2), ("1004", "Ayşe Kaya", 2), ("1008", None, 2),
        ("1015", "Can / Deniz", 1),
    ]  # fmt: skip
    assert [tuple(row) for row in service] == [("02120000000", 7)]
    dialect = "duckdb" if backend == "duckdb" else "postgresql"
    with wh.transaction() as con:
        stored = con.scalar(
            "SELECT fingerprint FROM _views_state WHERE key = ?", [VIEWS_FINGERPRINT_KEY]
        )
    assert stored == views_fingerprint(dialect) != old_fingerprint
