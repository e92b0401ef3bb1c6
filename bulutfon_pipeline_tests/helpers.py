"""Shared test helpers: read warehouse tables and compare them with the simulator's truth."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bulutfon_pipeline.settings import DEFAULT_ACCOUNT
from bulutfon_pipeline.warehouse import Warehouse, schema
from bulutfon_pipeline.warehouse.backend import Transaction
from bulutfon_pipeline.warehouse.postgres_backend import Postgres

#: What the readers below take: a DuckDB file (path), or a PostgreSQL warehouse as a
#: SQLAlchemy URL (``postgresql+psycopg://...``, schema ``public``) or ``(url, schema)``.
Database = Path | str | tuple[str, str]

#: The warehouses an end-to-end test can load: ``pytest.mark.parametrize("backend", BACKENDS)``.
BACKENDS = ("duckdb", "postgres")


@dataclass(frozen=True)
class WarehouseTarget:
    """Where one end-to-end test loads: the variables that select the warehouse (for the
    pipeline's environment) and what the readers below take (``db``)."""

    #: The DuckDB file, or the PostgreSQL database's URL.
    db: Database
    #: ``BULUTFON_DUCKDB_PATH`` and ``BULUTFON_WAREHOUSE_URL`` (empty on DuckDB).
    env: dict[str, str]

    @property
    def is_postgres(self) -> bool:
        return _is_postgres(self.db)

    def warehouse(self, lock_timeout_s: float = 10.0) -> Warehouse:
        """The warehouse itself, for tests that call the library below the runner."""
        if isinstance(self.db, Path):
            return Warehouse(self.db, lock_timeout_s=lock_timeout_s)
        assert isinstance(self.db, str), self.db
        return Warehouse.on(Postgres(self.db, lock_timeout_s=lock_timeout_s))


#: The ``warehouse_target`` fixture: ``make(backend, folder)`` -> a :class:`WarehouseTarget`.
WarehouseTargetFactory = Callable[[str, Path], WarehouseTarget]

KEYS = {
    "cdrs": ("uuid",),
    "call_flow_steps": ("cdr_uuid", "step_index"),
    "originations": ("cdr_uuid", "step_index", "attempt_index"),
    "load_rejects": ("uuid", "stage"),
    "extensions": ("extension_id", "valid_from"),
    "ring_groups": ("group_id", "valid_from"),
    "ring_group_members": ("group_id", "extension_id", "valid_from"),
    "phone_numbers": ("did_id", "valid_from"),
    "phone_number_hours": ("did_id", "valid_from", "weekday"),
}

#: ``valid_from`` of the directory's first versions (``schema.DIRECTORY_BEGINNING``).
BEGINNING = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _normal(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, float) and value.is_integer():
        return decimal.Decimal(int(value))
    if isinstance(value, decimal.Decimal):
        return value.normalize()
    return value


def _is_postgres(db: Database) -> bool:
    return isinstance(db, tuple) or (isinstance(db, str) and db.startswith("postgresql"))


def _fetch(db: Database, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of ``sql`` on a DuckDB file (read-only) or PostgreSQL."""
    if _is_postgres(db):
        url, schema = db if isinstance(db, tuple) else (str(db), "public")
        with Postgres(url, schema=schema).connect() as pg:
            cursor = pg.execute(sql)
            return [d.name for d in cursor.description or []], cursor.fetchall()
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description or []], cursor.fetchall()
    finally:
        con.close()


def read_table(
    db: Database,
    table: str,
    columns: Iterable[str] | None = None,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> list[dict]:
    """Every row of ``account`` in ``table`` as dicts (instants as aware UTC datetimes),
    sorted by key, without the ``account`` column (every table but ``_views_state`` starts
    with it; the simulator's expected tables have none).

    ``db``: a DuckDB file, or a PostgreSQL URL (or ``(url, schema)``).
    """
    names, fetched = _fetch(db, f"SELECT * FROM {table}")
    rows = [dict(zip(names, row, strict=True)) for row in fetched]
    if "account" in names:
        rows = [row for row in rows if row["account"] == account]
        names = [name for name in names if name != "account"]
    wanted = list(columns) if columns is not None else names
    result = [{name: _normal(row[name]) for name in wanted} for row in rows]
    key = KEYS.get(table, tuple(wanted[:1]))
    return sorted(result, key=lambda r: tuple(str(r[k]) for k in key))


def expected_rows(expected: Mapping[str, list[dict]], table: str) -> list[dict]:
    """The simulator's ground truth for ``table``, normalized like :func:`read_table`."""
    rows = [{k: _normal(v) for k, v in row.items()} for row in expected[table]]
    key = KEYS[table]
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))


def accounts_of(db: Database, table: str) -> set[str]:
    """The distinct ``account`` values of ``table``."""
    return {account for (account,) in _fetch(db, f"SELECT DISTINCT account FROM {table}")[1]}


def assert_tables_match(
    db: Database, expected: Mapping[str, list[dict]], *, account: str = DEFAULT_ACCOUNT
) -> None:
    """Every row of cdrs, call_flow_steps and originations of ``account`` equals the ground
    truth (the simulator's expected tables of that account), and so do its rejects.

    For the single account ``default`` (every test that loads one account), the tables
    also hold no other account's row."""
    if account == DEFAULT_ACCOUNT:
        for table in ("cdr_listing", "cdrs", "call_flow_steps", "originations", "load_rejects"):
            assert accounts_of(db, table) <= {DEFAULT_ACCOUNT}, table
    for table in ("cdrs", "call_flow_steps", "originations"):
        want = expected_rows(expected, table)
        columns = list(want[0]) if want else None
        got = read_table(db, table, columns, account=account)
        assert len(got) == len(want), f"{table}: {len(got)} rows, expected {len(want)}"
        for got_row, want_row in zip(got, want, strict=True):
            assert got_row == want_row, f"{table} differs:\n got  {got_row}\n want {want_row}"
    want_rejects = {(r["uuid"], r["stage"]) for r in expected["load_rejects"]}
    got_rejects = {(r["uuid"], r["stage"]) for r in read_table(db, "load_rejects", account=account)}
    assert got_rejects == want_rejects


def versions(
    rows: Iterable[Mapping[str, Any]],
    valid_from: dt.datetime = BEGINNING,
    valid_to: dt.datetime | None = None,
) -> list[dict]:
    """Directory rows (the simulator's ``Directory.expected()``) as versions valid from
    ``valid_from`` to ``valid_to``."""
    return [{**row, "valid_from": valid_from, "valid_to": valid_to} for row in rows]


def insert_rows(con: Transaction, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` by column name (``INSERT INTO t (a, b) VALUES (?, ?)``).

    Every row must name the same columns; columns it leaves out get their default, and
    ``account`` (where the table has it) ``default``.
    """
    if not rows:
        return
    known = schema.metadata.tables.get(table)
    if known is not None and "account" in known.c and "account" not in rows[0]:
        rows = [{"account": DEFAULT_ACCOUNT, **row} for row in rows]
    columns = list(rows[0])
    for row in rows:
        assert list(row) == columns, f"{table}: {list(row)} is not {columns}"
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["?"] * len(columns))
    con.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({marks})",
        [[row[c] for c in columns] for row in rows],
    )


def table_snapshot(db: Database, *, account: str = DEFAULT_ACCOUNT) -> dict[str, list[dict]]:
    """All data tables of ``account`` except load-time columns, for before/after comparisons."""
    skip = {"loaded_at", "fetched_at", "last_seen_at", "rejected_at", "updated_at"}
    snapshot = {}
    for table in ("cdr_listing", "cdrs", "call_flow_steps", "originations", "raw_cdr_details"):
        rows = read_table(db, table, account=account)
        snapshot[table] = [{k: v for k, v in row.items() if k not in skip} for row in rows]
    return snapshot


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore them afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        yield
