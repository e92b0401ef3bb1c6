"""The marts on PostgreSQL against the same marts on DuckDB: same rows, same column types.

Each test builds the same rows in a DuckDB warehouse (the ``warehouse`` fixture) and in a
fresh database of the tests' real PostgreSQL server (tables created from
``schema.metadata``, views from ``ViewDefinition.ddl("postgresql")``), then reads every
view on both. Rows must be equal cell by cell and of the same Python type; floats may
differ by a relative 1e-12 (``FLOAT_TOLERANCE``), nothing else may differ at all. Instants
(``timestamptz``) are compared as instants, whatever time zone each session shows them in.

It also runs the report's own queries (``report/data.py``) and the demo's example queries
on both, and checks that PostgreSQL plans ``missed_calls`` as a join.

Data: the nine hand-made calls of ``fixtures/marts.py`` and their directory, with the
working-hours calls of ``fixtures/directory.py``; simulator datasets across the Istanbul
DST changes of 2015 and 2016 (their ground truth, not a load), each with a generated
directory (``directory.directory_for``: renames on a call's instant, shared numbers,
unknown extensions, DIDs spelt three ways with working hours); and generated rows
at the edges: the instants around every Istanbul clock change of 2015-2016 (and the 2016
switch to permanent +03), local midnights and hour boundaries to the microsecond, times
with fractions of a second, NULLs in every nullable column a mart reads, masked callers.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from bulutfon_pipeline.cli.demo import EXAMPLE_QUERIES
from bulutfon_pipeline.report.data import read_marts, summarize, top_missed_callers
from bulutfon_pipeline.settings import DEFAULT_ACCOUNT
from bulutfon_pipeline.simulator.dataset import generate_dataset
from bulutfon_pipeline.simulator.model import SimulatorConfig
from bulutfon_pipeline.warehouse import Warehouse, schema
from bulutfon_pipeline.warehouse.postgres_text import to_pyformat
from bulutfon_pipeline.warehouse.views import VIEWS, view_names
from bulutfon_pipeline_tests.fixtures.directory import (
    DIRECTORY_TABLES,
    HOURS_CALLS,
    HOURS_DIRECTORY,
    NINE_CALLS_DIRECTORY,
    directory_for,
)
from bulutfon_pipeline_tests.fixtures.marts import CALLS, ORIGINATIONS, STEPS
from bulutfon_pipeline_tests.helpers import insert_rows

Tables = dict[str, list[dict[str, Any]]]

#: Floats of the two engines may differ by this much (relative). They do differ in the
#: last bit: the percentiles interpolate in a different order (the fixture's Tuesday p90
#: ring time is 28.500000000000004 in DuckDB and 28.5 in PostgreSQL).
FLOAT_TOLERANCE = 1e-12

#: DuckDB's ``DESCRIBE`` type of a mart column -> PostgreSQL's ``information_schema`` one.
TYPE_MAP = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "DOUBLE": "double precision",
    "VARCHAR": "character varying",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp without time zone",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
}

#: The columns that identify a row of each mart.
VIEW_KEYS = {
    "daily_call_summary": ("account", "call_date", "direction"),
    "ring_group_performance": (
        "account", "ring_group", "ring_group_name", "destination", "destination_name",
    ),
    "hourly_call_load": ("account", "weekday", "hour"),
    "extension_activity": ("account", "extension", "extension_name"),
    "missed_calls": ("account", "uuid"),
    "working_hours_service_level": ("account", "number", "call_date"),
}  # fmt: skip

ISTANBUL = ZoneInfo("Europe/Istanbul")
UTC = dt.UTC
LOADED_AT = dt.datetime(2017, 1, 1, tzinfo=UTC)
TABLE_ORDER = ("cdrs", "call_flow_steps", "originations", *DIRECTORY_TABLES)


# --- the data ---------------------------------------------------------------------------


def fixture_tables() -> Tables:
    return {
        "cdrs": CALLS, "call_flow_steps": STEPS, "originations": ORIGINATIONS,
        **NINE_CALLS_DIRECTORY,
    }  # fmt: skip


def hours_tables() -> Tables:
    """The nine calls and the working-hours calls, with both directories."""
    nine = fixture_tables()
    extra: Tables = {"cdrs": HOURS_CALLS, **HOURS_DIRECTORY}
    return {name: nine[name] + extra.get(name, []) for name in nine}


def with_directory(tables: Tables) -> Tables:
    return {**tables, **directory_for(tables)}


def simulator_tables(end_date: dt.date, days: int, dialect: str) -> Tables:
    """A simulator dataset's ground truth (``loaded_at`` added)."""
    config = SimulatorConfig(days=days, calls_per_day=60, end_date=end_date, dialect=dialect)
    truth = generate_dataset(config).expected_tables()
    return with_directory({
        "cdrs": [{**row, "loaded_at": LOADED_AT} for row in truth["cdrs"]],
        "call_flow_steps": truth["call_flow_steps"],
        "originations": truth["originations"],
    })  # fmt: skip


def _utc(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=UTC)


#: Istanbul's clock changes of 2015-2016 (UTC): DST start 2015 (delayed a day), DST end
#: 2015 (delayed to 8 November), DST start 2016, the switch to permanent +03 (no clock
#: change), and the autumn change that no longer happened.
CLOCK_CHANGES = [
    _utc(2015, 3, 29, 1),
    _utc(2015, 11, 8, 1),
    _utc(2016, 3, 27, 1),
    _utc(2016, 9, 6, 21),
    _utc(2016, 10, 30, 1),
]
#: Local midnights in winter (+02) and summer (+03), and a local hour boundary.
MIDNIGHTS = [
    _utc(2015, 12, 31, 22),
    _utc(2016, 1, 3, 22),
    _utc(2016, 6, 5, 21),
    _utc(2016, 12, 31, 21),
    _utc(2016, 5, 8, 9),
]
NUDGES = [
    dt.timedelta(hours=-1, minutes=-1),
    dt.timedelta(seconds=-1),
    dt.timedelta(microseconds=-1),
    dt.timedelta(0),
    dt.timedelta(microseconds=1),
    dt.timedelta(seconds=1, microseconds=500_000),
    dt.timedelta(minutes=59, seconds=59, microseconds=999_999),
    dt.timedelta(hours=1, minutes=1),
]
CALLERS = ["905321110000", "905559990000", "90532xxxxxxx", "9055xxxxxxxx", None, "1008"]
EXTENSIONS = ["1004", "1008", "1015", None]
GROUPS = ["101", "102", None]


def edge_tables(seed: int = 13) -> Tables:
    """Calls at the edges of time and of NULL, with ring-group and extension flow rows."""
    rng = random.Random(seed)
    instants = [t + nudge for t in CLOCK_CHANGES + MIDNIGHTS for nudge in NUDGES]
    # and a week of calls at every local hour, so every weekday and hour appears
    instants += [_utc(2016, 2, 1) + dt.timedelta(hours=h, minutes=7) for h in range(0, 168, 5)]
    cdrs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    origs: list[dict[str, Any]] = []
    for n, start in enumerate(instants):
        uuid = f"e{n:03d}"
        direction = rng.choice(["IN", "IN", "IN", "OUT", "LOCAL", None])
        ring = rng.choice([0, 1, 7, 20, 45, None])
        answered = rng.random() < 0.5
        talk = rng.choice([0, 3, 61, 300]) if answered else rng.choice([0, None])
        fraction = dt.timedelta(microseconds=rng.choice([0, 1, 250_000, 999_999]))
        answer = start + dt.timedelta(seconds=ring or 0) + fraction if answered else None
        hangup = (answer or start) + dt.timedelta(seconds=talk or 0, microseconds=333_333)
        cdrs.append({
            "uuid": uuid, "call_type": "voice", "direction": direction,
            "caller": rng.choice(CALLERS),
            "callee": rng.choice(["902120000000", "905321110000", "1004", None]),
            "extension": rng.choice(EXTENSIONS), "call_time": start, "answer_time": answer,
            "hangup_time": hangup, "call_date": start.astimezone(ISTANBUL).date(),
            "answered": answered, "ring_seconds": ring, "talk_seconds": talk,
            "call_record": "NO", "has_recording": False, "hangup_cause": None,
            "hangup_cause_code": rng.choice(["NORMAL_CLEARING", "NO_ANSWER", None]),
            "hangup_state": None, "hangup_state_code": None,
            "missing_call": direction == "IN" and not answered,
            "call_price": rng.choice([None, Decimal("0.0125")]), "loaded_at": LOADED_AT,
        })  # fmt: skip
        kind = rng.choice(["group", "group", "extension", "none"])
        if kind == "group":
            group = rng.choice(GROUPS)
            steps.append(_step(uuid, 0, "11", start, None, None, "REDIRECTED_TO_GROUP", group))
            steps.append(_step(uuid, 1, group, start, answer, hangup, "CONNECTING_TO_GROUP"))
            winner = rng.randrange(3) if answered else None
            for attempt in range(3):
                outcome = (
                    "OTHER" if winner is None else "ANSWERED" if attempt == winner else "LOSE_RACE"
                )
                origs.append({
                    "cdr_uuid": uuid, "step_index": 1, "attempt_index": attempt,
                    "destination": rng.choice(EXTENSIONS), "start_time": start,
                    "answer_time": answer if outcome == "ANSWERED" else None,
                    "hangup_time": hangup if outcome == "ANSWERED" else answer or hangup,
                    "result": outcome, "outcome": outcome, "answered": outcome == "ANSWERED",
                })  # fmt: skip
        elif kind == "extension":
            callee = rng.choice(EXTENSIONS)
            steps.append(_step(uuid, 0, callee, start, answer, hangup, "CONNECTING_TO_EXTENSION"))
    return with_directory({"cdrs": cdrs, "call_flow_steps": steps, "originations": origs})


def _step(
    uuid: str,
    index: int,
    callee: str | None,
    start: dt.datetime,
    answer: dt.datetime | None,
    hangup: dt.datetime | None,
    kind: str,
    target: str | None = None,
) -> dict[str, Any]:
    return {
        "cdr_uuid": uuid, "step_index": index, "callee": callee, "start_time": start,
        "answer_time": answer, "hangup_time": hangup, "redirection": None,
        "redirection_kind": kind, "redirection_target": target,
    }  # fmt: skip


def two_accounts(tables: Tables) -> Tables:
    """``tables`` twice: as the rows of ``default`` and of ``izmir`` (same uuids)."""
    return {
        name: [{"account": account, **row} for account in ("default", "izmir") for row in rows]
        for name, rows in tables.items()
    }


DATASETS = {
    "marts fixture": fixture_tables,
    "marts fixture, two accounts": lambda: two_accounts(fixture_tables()),
    "working hours": hours_tables,
    "edges": edge_tables,
    "simulator v1, DST start 2016": lambda: simulator_tables(dt.date(2016, 4, 2), 10, "v1"),
    "simulator seed, DST end 2015": lambda: simulator_tables(dt.date(2015, 11, 12), 8, "seed"),
    # v2 is v1's data under other names (the API's URLs in call_record): extended only
    "simulator v2, DST end 2015": lambda: simulator_tables(dt.date(2015, 11, 10), 6, "v2"),
}


# --- the two engines --------------------------------------------------------------------


@pytest.fixture
def warehouse(duckdb_warehouse: Warehouse) -> Warehouse:
    """The DuckDB side of each comparison (the PostgreSQL side is ``pg_engine``)."""
    return duckdb_warehouse


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """The warehouse tables (from the SQLAlchemy metadata) in a fresh PostgreSQL database."""
    engine = sa.create_engine(postgres_url)
    schema.metadata.create_all(engine)
    yield engine
    engine.dispose()


def build_both(warehouse: Warehouse, engine: sa.Engine, tables: Tables) -> None:
    """Insert ``tables`` into both engines and create every view on PostgreSQL (the DuckDB
    warehouse has them from ``ensure_schema``)."""
    tables = {
        name: [row if "account" in row else {"account": DEFAULT_ACCOUNT, **row} for row in rows]
        for name, rows in tables.items()
    }
    with warehouse.transaction() as con:
        for name in TABLE_ORDER:
            if tables.get(name):
                # through Arrow: DuckDB's executemany takes seconds for a few thousand rows
                con.con.register("new_rows", pa.Table.from_pylist(tables[name]))
                columns = ", ".join(f'"{column}"' for column in tables[name][0])
                con.execute(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM new_rows")
                con.con.unregister("new_rows")
    with engine.begin() as conn:
        for name in TABLE_ORDER:
            if tables.get(name):
                conn.execute(schema.metadata.tables[name].insert(), tables[name])
        for view in VIEWS:
            conn.exec_driver_sql(view.ddl("postgresql"))


def duckdb_view(warehouse: Warehouse, view: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with warehouse.transaction() as con:
        cursor = con.execute(f"SELECT * FROM {view}")
        return [d[0] for d in cursor.description or []], cursor.fetchall()


def postgres_view(
    engine: sa.Engine, view: str, time_zone: str = "UTC"
) -> tuple[list[str], list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SET TIME ZONE '{time_zone}'")
        result = conn.exec_driver_sql(f"SELECT * FROM {view}")
        return list(result.keys()), [tuple(row) for row in result]


def _normal(value: Any) -> Any:
    """Instants as UTC (each session shows them in its own zone); anything else as is."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def keyed(
    view: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Rows by their key columns (which must be unique)."""
    positions = [columns.index(key) for key in VIEW_KEYS[view]]
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[p] for p in positions)
        assert key not in out, f"{view}: key {key} twice"
        out[key] = {name: _normal(value) for name, value in zip(columns, row, strict=True)}
    return out


def assert_same_row(view: str, key: Any, duck: Mapping[str, Any], pg: Mapping[str, Any]) -> None:
    for column, want in duck.items():
        got = pg[column]
        where = f"{view} {key} {column}: DuckDB {want!r}, PostgreSQL {got!r}"
        assert type(got) is type(want), where
        if isinstance(want, float):
            assert math.isclose(got, want, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE), where
        else:
            assert got == want, where


def assert_marts_equal(warehouse: Warehouse, engine: sa.Engine, time_zone: str = "UTC") -> int:
    """Every view has the same columns and rows on both engines; returns the rows compared."""
    compared = 0
    for view in view_names():
        duck_columns, duck_rows = duckdb_view(warehouse, view)
        pg_columns, pg_rows = postgres_view(engine, view, time_zone)
        assert pg_columns == duck_columns, view
        duck, pg = keyed(view, duck_columns, duck_rows), keyed(view, pg_columns, pg_rows)
        assert sorted(pg, key=repr) == sorted(duck, key=repr), f"{view}: different keys"
        for key, row in duck.items():
            assert_same_row(view, key, row, pg[key])
        compared += len(duck)
    return compared


# --- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset",
    [pytest.param(name, marks=pytest.mark.extended) if "v2" in name else name for name in DATASETS],
)
def test_every_mart_has_the_same_rows_on_both_engines(
    dataset: str, warehouse: Warehouse, pg_engine: sa.Engine
) -> None:
    tables = DATASETS[dataset]()
    build_both(warehouse, pg_engine, tables)
    counts = {view: len(duckdb_view(warehouse, view)[1]) for view in view_names()}
    # every mart has rows to compare (a view that is empty on both proves nothing)
    assert all(counts.values()), counts
    assert assert_marts_equal(warehouse, pg_engine) == sum(counts.values())


def test_marts_do_not_depend_on_the_session_time_zone(
    warehouse: Warehouse, pg_engine: sa.Engine
) -> None:
    build_both(warehouse, pg_engine, edge_tables())
    for zone in ("America/New_York", "Asia/Kolkata", "Europe/Istanbul"):
        assert assert_marts_equal(warehouse, pg_engine, time_zone=zone) > 0


def test_the_edges_reach_every_weekday_hour_and_kind_of_missed_call(warehouse: Warehouse) -> None:
    # the edge rows would not test the local-time marts if they missed a weekday or hour
    tables = edge_tables()
    with warehouse.transaction() as con:
        for name in TABLE_ORDER:
            insert_rows(con, name, tables[name])
        got = con.execute(
            "SELECT count(DISTINCT weekday), count(DISTINCT hour), count(*) FROM hourly_call_load"
        ).fetchone()
        assert got is not None
        assert got[0] == 7
        assert got[1] == 24
        # and missed calls of every kind: masked, reached later, still due, within working
        # hours, outside them, and with no working hours
        kinds = con.execute(
            "SELECT count(*) FILTER (WHERE caller_masked), count(reached_at), "
            "count(*) FILTER (WHERE needs_call_back), count(*) FILTER (WHERE in_working_hours), "
            "count(*) FILTER (WHERE NOT in_working_hours), "
            "count(*) FILTER (WHERE in_working_hours IS NULL) FROM missed_calls"
        ).fetchone()
        # and names: renamed, and shared (sorted by bytes: ö after Z)
        names = {
            row[0]
            for row in con.execute("SELECT extension_name FROM extension_activity").fetchall()
        }
    assert kinds is not None
    assert all(kinds), kinds
    assert {"Ext 1004", "Ext 1004 (yeni)", "Ext 1008 / Zeynep / ömer"} <= names


def test_mart_column_types_map_between_engines(warehouse: Warehouse, pg_engine: sa.Engine) -> None:
    build_both(warehouse, pg_engine, fixture_tables())
    with pg_engine.connect() as conn:
        pg_types = {
            (view, column): data_type
            for view, column, data_type in conn.execute(
                sa.text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = ANY(:views) "
                    "ORDER BY table_name, ordinal_position"
                ),
                {"views": view_names()},
            )
        }
    duck_types = {}
    with warehouse.transaction() as con:
        for view in view_names():
            for column, column_type, *_ in con.execute(f"DESCRIBE {view}").fetchall():
                duck_types[view, column] = column_type
    assert set(pg_types) == set(duck_types)
    mapped = {
        key: TYPE_MAP.get(column_type, column_type) for key, column_type in duck_types.items()
    }
    assert pg_types == mapped


def test_hourly_call_load_on_postgres(warehouse: Warehouse, pg_engine: sa.Engine) -> None:
    # the hand-computed rows of test_marts.py, straight from PostgreSQL
    build_both(warehouse, pg_engine, fixture_tables())
    with pg_engine.connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT weekday, weekday_name, hour, calls, incoming, outgoing, answered, "
            "missed_incoming FROM hourly_call_load WHERE account = 'default' ORDER BY weekday, hour"
        ).all()
    assert [tuple(row) for row in got] == [
        (1, "Monday", 9, 2, 2, 0, 1, 1),
        (1, "Monday", 10, 1, 1, 0, 0, 1),
        (1, "Monday", 11, 1, 0, 1, 1, 0),
        (2, "Tuesday", 0, 1, 1, 0, 0, 1),
        (2, "Tuesday", 9, 2, 1, 0, 1, 1),
        (2, "Tuesday", 10, 1, 1, 0, 1, 0),
        (2, "Tuesday", 15, 1, 1, 0, 0, 1),
    ]


class PostgresFrames:
    """The one method of ``Warehouse`` the report reads through, over PostgreSQL."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def fetch_frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql(to_pyformat(sql), tuple(params))
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


@pytest.mark.parametrize("dataset", ["marts fixture", "edges", "marts fixture, two accounts"])
def test_the_report_reads_the_same_from_both_engines(
    dataset: str, warehouse: Warehouse, pg_engine: sa.Engine
) -> None:
    # report/data.py's own queries, run on PostgreSQL: the same summary and call-back list
    build_both(warehouse, pg_engine, DATASETS[dataset]())
    duck = read_marts(warehouse)
    pg = read_marts(PostgresFrames(pg_engine))  # type: ignore[arg-type]
    assert summarize(pg) == summarize(duck)
    assert summarize(duck).calls == len(DATASETS[dataset]()["cdrs"])
    one = read_marts(PostgresFrames(pg_engine), account="default")  # type: ignore[arg-type]
    assert summarize(one) == summarize(read_marts(warehouse, account="default"))
    duck_top, pg_top = top_missed_callers(duck["missed"]), top_missed_callers(pg["missed"])
    assert len(duck_top) > 0
    pd.testing.assert_frame_equal(pg_top, duck_top, check_dtype=False)
    # the same rows in the same order (the queries' ORDER BY); a DATE is a datetime64
    # column from DuckDB and one of dates from psycopg, so both are made datetime64
    for frame in ("daily", "hourly", "groups", "service"):
        got, want = pg[frame], duck[frame]
        if "call_date" in want:
            got = got.assign(call_date=pd.to_datetime(got["call_date"]))
            want = want.assign(call_date=pd.to_datetime(want["call_date"]))
        assert len(want) > 0
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=FLOAT_TOLERANCE)


def _as_number(value: Any) -> Any:
    # round() gives a DOUBLE in DuckDB and a numeric in PostgreSQL: compare their values
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value)
    return value


def test_the_demo_queries_give_the_same_rows_on_both_engines(
    warehouse: Warehouse, pg_engine: sa.Engine
) -> None:
    build_both(warehouse, pg_engine, DATASETS["simulator v1, DST start 2016"]())
    for title, sql in EXAMPLE_QUERIES:
        with warehouse.transaction() as con:
            want = [tuple(map(_as_number, row)) for row in con.execute(sql).fetchall()]
        with pg_engine.connect() as conn:
            got = [tuple(map(_as_number, row)) for row in conn.exec_driver_sql(sql)]
        assert len(want) > 1, title
        assert got == want, title


def test_missed_calls_runs_without_a_correlated_subquery_on_postgres(
    warehouse: Warehouse, pg_engine: sa.Engine
) -> None:
    # PostgreSQL runs a correlated subquery once per outer row (DuckDB decorrelates it):
    # the first version of missed_calls took 20 s there for 9,000 calls, growing with the
    # square of the calls. The plan must join instead.
    build_both(warehouse, pg_engine, fixture_tables())
    with pg_engine.connect() as conn:
        plan = "\n".join(
            row[0] for row in conn.exec_driver_sql("EXPLAIN SELECT * FROM missed_calls")
        )
    assert "SubPlan" not in plan, plan
    assert "Join" in plan, plan
