"""The interface every warehouse backend implements, and the Arrow batches they take.

The concern modules (``listing``, ``details``, ``rejects``, ``recordings``, ``changes``,
``pending``) are written once, over these two protocols:

* :class:`Backend`: the database. ``transaction()`` yields a :class:`Transaction`;
  ``session()`` keeps one connection for the transactions inside it; ``create_schema()``
  makes the tables (and views); ``name`` is where it is, fit for messages (a PostgreSQL
  URL's password is hidden).
* :class:`Transaction`: one open transaction. Plain SQL goes through :meth:`execute`
  with ``?`` placeholders (a backend translates them for its driver); what the engines
  spell differently is a method: bulk batches (:meth:`~Transaction.batches`,
  :meth:`~Transaction.insert`, :meth:`~Transaction.upsert`), one-row upserts
  (:meth:`~Transaction.replace_row`), temporary tables, affected-row counts, and SQL
  fragments (:meth:`~Transaction.iso_instant_sql`).

Implementations: ``duckdb_backend.DuckDB`` (Arrow tables registered as views, ``INSERT
BY NAME``) and ``postgres_backend.Postgres`` (psycopg 3, ``COPY`` into temporary tables,
``INSERT ... ON CONFLICT``). Batches travel as Arrow tables typed by the SQLAlchemy schema
(:func:`to_arrow`); no SQL is ever built from data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

__all__ = [
    "KEYS_SQL",
    "Backend",
    "Cursor",
    "Transaction",
    "json_array",
    "to_arrow",
    "with_account",
]

#: The values of one ``?`` parameter, a list of strings, as a one-column set:
#: ``uuid IN (SELECT unnest(CAST(? AS TEXT[])))`` reads the same on both engines, without a
#: batch table (a PostgreSQL temporary table costs its own CREATE, COPY and DROP).
KEYS_SQL = "SELECT unnest(CAST(? AS TEXT[]))"


class Cursor(Protocol):
    """What :meth:`Transaction.execute` returns: a DB-API-like result."""

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    """One open transaction of a :class:`Backend` (what ``Backend.transaction()`` yields)."""

    #: The backend's name for messages (no password).
    name: str
    #: What a failed write (a full disk) raises on this backend: the fault points raise it.
    write_failure: type[Exception]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement, ``?`` placeholders bound to ``params``."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters (small inputs: tests, fixtures)."""
        ...

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (``None`` without a row)."""
        ...

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT/UPDATE/DELETE without RETURNING; the rows it affected."""
        ...

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A read query's rows as a DataFrame."""
        ...

    def batches(self, **tables: pa.Table) -> AbstractContextManager[None]:
        """Make Arrow tables queryable by name (``FROM <name>``) inside the block."""
        ...

    def insert(self, table: sa.Table, batch: str) -> None:
        """Append the batch ``batch`` to ``table``, matching columns by name."""
        ...

    def append(self, table: sa.Table, rows: pa.Table) -> None:
        """Append an Arrow table's rows to ``table`` (matching columns by name), without
        making them queryable: the cheapest bulk write."""
        ...

    def upsert(
        self,
        table: sa.Table,
        batch: str,
        *,
        keep: Sequence[str] = (),
        set_sql: Mapping[str, str] | None = None,
    ) -> None:
        """Upsert the batch (unique keys) into ``table`` by its primary key.

        Args:
            keep: non-key columns an update leaves alone (e.g. ``first_seen_at``).
            set_sql: SQL expressions for some updated columns, over ``t`` (the stored
                row) and ``{new}`` (the batch's row), e.g.
                ``greatest(t.last_seen_at, {new}.last_seen_at)``; default the new value.
        """
        ...

    def replace_row(self, table: sa.Table, values: Mapping[str, Any]) -> None:
        """Insert one row, replacing the row with the same primary key."""
        ...

    def create_temp_table(self, name: str, select_sql: str, params: Sequence[Any] = ()) -> None:
        """``name`` becomes a temporary table of ``select_sql``'s rows (replacing one of
        that name); gone at the end of the transaction at the latest."""
        ...

    def drop_temp_table(self, name: str) -> None:
        """Drop a table made by :meth:`create_temp_table`."""
        ...

    def iso_instant_sql(self, expression: str) -> str:
        """SQL rendering a ``timestamptz`` expression as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
        ...

    def take_turns(self, purpose: str) -> None:
        """Until the end of this transaction, be the only writer of ``purpose`` (e.g. the
        detail loads): concurrent runs over the same calls then write one batch after the
        other instead of racing (PostgreSQL: a transaction-level advisory lock; DuckDB
        has one writer process anyway)."""
        ...


class Backend(Protocol):
    """A warehouse database: transactions, sessions and the schema."""

    #: Where it is, fit for messages: a file path, or a URL without its password.
    name: str
    #: A server (many writers and readers at once) rather than an embedded file.
    is_server: bool
    #: How long a write waits for a lock another writer holds.
    lock_timeout_s: float

    def transaction(self) -> AbstractContextManager[Transaction]:
        """``BEGIN``, yield, ``COMMIT`` (``ROLLBACK`` on error); database errors become
        :class:`~bulutfon_pipeline.warehouse.errors.WarehouseError`."""
        ...

    def session(self, max_hold_s: float = 5.0) -> AbstractContextManager[None]:
        """Reuse one connection for the transactions inside the block."""
        ...

    def create_schema(self) -> None:
        """Create the missing tables and (re)create the views. Idempotent."""
        ...


# --- Arrow batches, typed by the SQLAlchemy schema -----------------------------------------


def arrow_type(column: sa.Column[Any]) -> pa.DataType:
    """The Arrow type a batch column of ``column`` has."""
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, sa.Date):
        return pa.date32()
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()  # widened on purpose; the database casts to the column's INTEGER
    if isinstance(kind, sa.Numeric):
        return pa.decimal128(kind.precision or 18, kind.scale or 0)
    return pa.string()  # String, JSON (as text)


def to_arrow(frame: pd.DataFrame, table: sa.Table) -> pa.Table:
    """``frame``'s columns that belong to ``table``, typed exactly as the table.

    Column by column: ``pa.Table.from_pandas`` spent half of this conversion's time on
    its per-frame bookkeeping (pandas metadata, a thread pool), 600 times per 100,000
    calls.
    """
    fields = [pa.field(c.name, arrow_type(c)) for c in table.columns if c.name in frame]
    arrays = [pa.Array.from_pandas(frame[f.name], type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def json_array(texts: list[str]) -> pa.Array:
    """Valid JSON texts as an Arrow ``arrow.json`` array.

    DuckDB takes it as its JSON type as it is (a plain string column would be parsed once
    more to validate it, 0.7 s per 20,000 payloads); PostgreSQL receives the text
    unchanged into a ``json`` column.
    """
    return pa.ExtensionArray.from_storage(pa.json_(), pa.array(texts, pa.string()))


def with_account(rows: pa.Table, account: str) -> pa.Table:
    """``rows`` with an ``account`` column first, every row ``account``: what every table
    but ``_views_state`` starts with (issue 14). Added to the Arrow batch rather than the
    frame, so the normalised frames stay account-free and nothing is copied."""
    return rows.add_column(0, "account", pa.repeat(pa.scalar(account, pa.string()), rows.num_rows))
