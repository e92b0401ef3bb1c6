"""Everything DuckDB-specific, behind one module: connections and their settings, the
file lock, sessions and transactions, the DDL, Arrow bulk writes and the upsert SQL.

The concern modules (``listing``, ``details``, ``rejects``, ``recordings``, ``integrity``)
write their queries once, above this module: they open transactions with
:meth:`DuckDB.transaction`, hand batches over as Arrow tables (:func:`registered`,
:func:`to_arrow`) and write them with :func:`insert`, :func:`upsert` and
:func:`replace_row`. A PostgreSQL backend is a second module with the same surface.

Every transaction runs on a connection opened for it (or the :meth:`DuckDB.session`'s),
so several processes can take turns on the file: DuckDB admits one writer process at a
time, and :meth:`DuckDB.transaction` waits, with backoff, while another holds the lock.

Frames are bulk-inserted through Arrow tables whose types come from the SQLAlchemy schema
(:mod:`bulutfon_pipeline.warehouse.schema`), always ``INSERT ... BY NAME``. No SQL is ever
built from API values: they travel as parameters or registered Arrow tables.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import duckdb_engine
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from bulutfon_pipeline.settings import DUCKDB_CHECKPOINT_THRESHOLD, DUCKDB_MEMORY_LIMIT
from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse.errors import (
    LOCK_WAIT_LOGGER,
    WarehouseError,
    WarehouseLockedError,
)
from bulutfon_pipeline.warehouse.views import VIEWS

Connection = duckdb.DuckDBPyConnection
Connect = Callable[[], AbstractContextManager[Connection]]
#: What a failed write (a full disk) raises here: the fault-injection points raise it.
WRITE_FAILURE: type[Exception] = duckdb.IOException

__all__ = [
    "WRITE_FAILURE",
    "Connect",
    "Connection",
    "DuckDB",
    "create_schema",
    "create_table_statements",
    "fetch_frame",
    "insert",
    "json_array",
    "registered",
    "replace_row",
    "scalar",
    "to_arrow",
    "upsert",
]

_LOCK_MESSAGES = ("could not set lock", "conflicting lock")
_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_BACKOFF_FIRST_S = 0.02
_BACKOFF_MAX_S = 1.0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _holder(exc: duckdb.Error) -> str:  # who holds the file lock, as DuckDB's error says
    found = _HOLDER.search(str(exc))
    return "another process" if found is None else f"pid {found['pid']} ({found['program']})"


def _is_lock_error(exc: duckdb.Error) -> bool:
    message = str(exc).lower()
    return any(marker in message for marker in _LOCK_MESSAGES)


# --- connections, sessions, transactions ------------------------------------------------


class _Session:
    """The connection a :meth:`DuckDB.session` holds, and since when."""

    def __init__(self, max_hold_s: float) -> None:
        self.max_hold_s = max_hold_s
        self.manager: AbstractContextManager[Connection] | None = None
        self.con: Connection | None = None
        self.since = 0.0

    def release(self) -> None:
        manager, self.manager, self.con = self.manager, None, None
        if manager is not None:
            manager.__exit__(None, None, None)


class DuckDB:
    """A DuckDB database file, opened for a transaction (or a session) at a time.

    Args:
        path: the DuckDB database file.
        connect: optional factory of a context manager yielding a connection (e.g. a
            dagster-duckdb resource's ``get_connection``); default ``duckdb.connect(path)``
            with the pipeline's memory and checkpoint settings, closed after each use.
        lock_timeout_s: how long to wait while another process holds the file lock.
    """

    def __init__(
        self, path: Path, *, connect: Connect | None = None, lock_timeout_s: float = 120.0
    ) -> None:
        self.path = path
        self.lock_timeout_s = lock_timeout_s
        self._connect: Connect = connect or self._default_connect
        self._session: _Session | None = None
        #: Seam for tests: how to wait between lock attempts.
        self.sleep: Callable[[float], None] = time.sleep

    @contextmanager
    def _default_connect(self) -> Iterator[Connection]:
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": DUCKDB_MEMORY_LIMIT,
            "checkpoint_threshold": DUCKDB_CHECKPOINT_THRESHOLD,
        }
        con = duckdb.connect(str(self.path), config=config)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def session(self, max_hold_s: float = 5.0) -> Iterator[None]:
        """Reuse one connection for the transactions inside the block.

        Opening the file and closing it (which checkpoints the WAL into the file) cost
        more than writing a 500-call batch, so a load of many batches keeps its
        connection; it still lets go of the file once it has held it ``max_hold_s``
        (at the end of the transaction then running), so other processes get turns.
        Nested sessions join the outer one.
        """
        if self._session is not None:
            yield
            return
        self._session = session = _Session(max_hold_s)
        try:
            yield
        finally:
            self._session = None
            session.release()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The session's connection when a :meth:`session` is open, else a new one."""
        session = self._session
        if session is None:
            with self._open_connection() as con:
                yield con
            return
        if session.manager is None:
            manager = self._open_connection()
            session.con = manager.__enter__()
            session.manager, session.since = manager, time.monotonic()
        assert session.con is not None
        try:
            yield session.con
        except BaseException:
            session.release()
            raise
        if time.monotonic() - session.since >= session.max_hold_s:
            session.release()

    @contextmanager
    def _open_connection(self) -> Iterator[Connection]:
        """A connection, waiting with exponential backoff while the file is locked."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = _BACKOFF_FIRST_S
        while True:
            manager = self._connect()
            try:
                con = manager.__enter__()
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise WarehouseError(
                        f"cannot open warehouse {self.path}: {_one_line(exc)}"
                    ) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockedError(
                        f"warehouse {self.path} is locked by another process "
                        f"({_holder(exc)}); gave up after {self.lock_timeout_s:g}s "
                        "(BULUTFON_LOCK_TIMEOUT_S)"
                    ) from exc
                if delay == _BACKOFF_FIRST_S:  # the first wait: say so, once
                    LOCK_WAIT_LOGGER.warning(
                        "waiting for %s: another process holds its lock (%s); giving up "
                        "after %g s (BULUTFON_LOCK_TIMEOUT_S)",
                        self.path,
                        _holder(exc),
                        self.lock_timeout_s,
                    )
                self.sleep(min(delay * (0.5 + random.random() / 2), remaining))
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            break
        try:
            yield con
        except BaseException as exc:
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            manager.__exit__(None, None, None)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Open the file, ``BEGIN``, yield the connection, ``COMMIT`` (``ROLLBACK`` on error).

        The session time zone is UTC so TIMESTAMPTZ values round-trip exactly.

        Raises:
            WarehouseLockedError: the file stayed locked for ``lock_timeout_s``.
            WarehouseError: any DuckDB failure (the transaction is rolled back, so the last
                committed state stays intact). Other exceptions propagate after rollback.
        """
        with self._connection() as con:
            try:
                con.execute("SET TimeZone = 'UTC'")
                con.execute("BEGIN TRANSACTION")
            except duckdb.Error as exc:
                raise WarehouseError(f"warehouse {self.path}: {_one_line(exc)}") from exc
            try:
                yield con
            except BaseException as exc:
                with suppress(duckdb.Error):  # a failed statement may have aborted it already
                    con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise WarehouseError(f"warehouse {self.path}: {_one_line(exc)}") from exc
                raise
            try:
                con.execute("COMMIT")
            except duckdb.Error as exc:
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise WarehouseError(
                    f"warehouse {self.path}: commit failed: {_one_line(exc)}"
                ) from exc


# --- schema -------------------------------------------------------------------------------


def create_table_statements() -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` DDL for every table of the schema, compiled for DuckDB."""
    dialect = duckdb_engine.Dialect()
    return [
        str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip()
        for table in schema.metadata.sorted_tables
    ]


def create_schema(con: Connection) -> None:
    """Create the missing tables and create or replace every view, in the caller's
    transaction."""
    for statement in create_table_statements():
        con.execute(statement)
    for view in VIEWS:
        con.execute(view.ddl())


# --- reading ------------------------------------------------------------------------------


def scalar(con: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    """The first column of the first row (``None`` without a row)."""
    row = con.execute(sql, params if isinstance(params, Mapping) else list(params)).fetchone()
    return None if row is None else row[0]


def fetch_frame(con: Connection, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    """A read query's rows as a DataFrame."""
    return con.execute(sql, list(params)).df()


# --- Arrow bulk writes, typed by the SQLAlchemy schema -----------------------------------


def _arrow_type(column: sa.Column[Any]) -> pa.DataType:
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, sa.Date):
        return pa.date32()
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()  # widened on purpose; DuckDB casts to the column's INTEGER
    if isinstance(kind, sa.Numeric):
        return pa.decimal128(kind.precision or 18, kind.scale or 0)
    return pa.string()  # String, JSON (as text)


def to_arrow(frame: pd.DataFrame, table: sa.Table) -> pa.Table:
    """``frame``'s columns that belong to ``table``, typed exactly as the table.

    Column by column: ``pa.Table.from_pandas`` spent half of this conversion's time on
    its per-frame bookkeeping (pandas metadata, a thread pool), 600 times per 100,000
    calls.
    """
    fields = [pa.field(c.name, _arrow_type(c)) for c in table.columns if c.name in frame]
    arrays = [pa.Array.from_pandas(frame[f.name], type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def json_array(texts: list[str]) -> pa.Array:
    """Valid JSON texts as an Arrow ``arrow.json`` array, which DuckDB takes as its JSON
    type as it is: a plain string column would be parsed once more to validate it, 0.7 s
    per 20,000 payloads."""
    return pa.ExtensionArray.from_storage(pa.json_(), pa.array(texts, pa.string()))


@contextmanager
def registered(con: Connection, **batches: pa.Table) -> Iterator[None]:
    """Make Arrow tables queryable by name (``FROM <name>``) inside the block.

    Unregistered when the block succeeds. Not after an error: the aborted transaction
    would refuse that too, hiding the real error, and the connection is closed anyway
    (a session drops its connection on any error).
    """
    for name, batch in batches.items():
        con.register(name, batch)
    yield
    for name in batches:
        con.unregister(name)


def insert(con: Connection, table: sa.Table | str, batch: str) -> None:
    """Append the registered ``batch`` to ``table``, matching columns by name."""
    name = table if isinstance(table, str) else table.name
    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {batch}")  # noqa: S608


def upsert(
    con: Connection,
    table: sa.Table,
    batch: str,
    *,
    keep: Sequence[str] = (),
    set_sql: Mapping[str, str] | None = None,
) -> None:
    """Upsert the registered ``batch`` (unique keys) into ``table`` by its key.

    The key is the metadata's primary key, whether or not the DDL enforces it
    (:data:`~bulutfon_pipeline.warehouse.schema.UNENFORCED_KEY_TABLES`).

    ``UPDATE ... FROM`` the rows that exist, then ``INSERT ... BY NAME`` the others.
    DuckDB's ``INSERT OR REPLACE`` / ``ON CONFLICT`` is pathologically slow on
    composite keys arriving out of storage order (20 s for 350k rows), and delete +
    re-insert of the same keys makes its COMMIT slow; this form takes well under 1 s.

    Args:
        keep: non-key columns an update leaves alone (e.g. ``first_seen_at``).
        set_sql: SQL expressions (over ``t`` = stored row, ``b`` = batch row) for some
            updated columns; default ``b.<column>``.

    Identifiers come from the schema metadata, never from data; values travel only in
    the registered batch.
    """
    keys = schema.key_columns(table)
    expressions = dict(set_sql or {})
    assignments = ", ".join(
        f"{column.name} = {expressions.get(column.name, 'b.' + column.name)}"
        for column in table.columns
        if column.name not in keys and column.name not in keep
    )
    match = " AND ".join(f"t.{key} = b.{key}" for key in keys)
    con.execute(
        f"UPDATE {table.name} AS t SET {assignments} FROM {batch} AS b WHERE {match}"  # noqa: S608
    )
    con.execute(
        f"INSERT INTO {table.name} BY NAME SELECT b.* FROM {batch} AS b "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM {table.name} AS t WHERE {match})"
    )


def replace_row(con: Connection, table: sa.Table, values: Mapping[str, Any]) -> None:
    """Insert one row, replacing the row with the same primary key (a small table's
    upsert: ``_pipeline_state``)."""
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    con.execute(
        f"INSERT OR REPLACE INTO {table.name} ({columns}) VALUES ({marks})",  # noqa: S608
        list(values.values()),
    )
