"""Everything DuckDB-specific, behind one module: connections and their settings, the
file lock, sessions and transactions, the DDL, Arrow bulk writes and the upsert SQL.

:class:`DuckDB` implements :class:`~bulutfon_pipeline.warehouse.backend.Backend` and its
transactions :class:`~bulutfon_pipeline.warehouse.backend.Transaction`, the interface the
concern modules (``listing``, ``details``, ``rejects``, ``recordings``, ``changes``) are
written over; ``postgres_backend`` is the other implementation. Every transaction runs
on a connection opened for it (or the :meth:`DuckDB.session`'s), so several processes can
take turns on the file: DuckDB admits one writer process at a time, and
:meth:`DuckDB.transaction` waits, with backoff, while another holds the lock.

Frames are bulk-inserted through Arrow tables whose types come from the SQLAlchemy schema
(:mod:`bulutfon_pipeline.warehouse.schema`), always ``INSERT ... BY NAME``. No SQL is ever
built from API values: they travel as parameters or registered Arrow tables.
"""

from __future__ import annotations

import functools
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

from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse.duckdb_connect import connect_file
from bulutfon_pipeline.warehouse.errors import (
    LOCK_WAIT_LOGGER,
    WarehouseError,
    WarehouseLockedError,
)

Connection = duckdb.DuckDBPyConnection
Connect = Callable[[], AbstractContextManager[Connection]]
#: What a failed write (a full disk) raises here: the fault-injection points raise it.
WRITE_FAILURE: type[Exception] = duckdb.IOException

__all__ = [
    "WRITE_FAILURE",
    "Connect",
    "Connection",
    "DuckDB",
    "DuckDBTransaction",
    "create_table_statements",
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

    is_server = False
    write_failure: type[Exception] = WRITE_FAILURE

    def __init__(
        self, path: Path, *, connect: Connect | None = None, lock_timeout_s: float = 120.0
    ) -> None:
        self.path = path
        self.name = str(path)
        self.lock_timeout_s = lock_timeout_s
        self._connect: Connect = connect or functools.partial(connect_file, path)
        self._session: _Session | None = None
        #: Seam for tests: how to wait between lock attempts.
        self.sleep: Callable[[float], None] = time.sleep

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
                if delay == _BACKOFF_FIRST_S * 16:  # waited ~0.2 s already: say so, once
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
    def transaction(self) -> Iterator[DuckDBTransaction]:
        """Open the file, ``BEGIN``, yield the transaction, ``COMMIT`` (``ROLLBACK`` on error).

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
                yield DuckDBTransaction(con, self.name)
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

    def create_schema(self) -> None:
        """Bring the tables to the newest migration and the views to this release's SQL,
        in one transaction (:mod:`.schema_setup`).

        Raises:
            WarehouseError: the file's folder does not exist, its tables are not this
                project's (``SchemaMismatchError``), or DuckDB failed.
        """
        from bulutfon_pipeline.warehouse.duckdb_migrate import upgrade_duckdb
        from bulutfon_pipeline.warehouse.schema_setup import ensure_views

        if not self.path.parent.is_dir():
            raise WarehouseError(
                f"warehouse folder {self.path.parent} does not exist (for {self.path})"
            )
        with self.transaction() as tx:
            upgrade_duckdb(tx.con)
            ensure_views(tx, "duckdb")


def create_table_statements() -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` DDL for every table of the schema, compiled for DuckDB."""
    dialect = duckdb_engine.Dialect()
    return [
        str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip()
        for table in schema.metadata.sorted_tables
    ]


# --- a transaction: SQL, Arrow bulk writes, upserts ----------------------------------------


class DuckDBTransaction:
    """An open DuckDB transaction (:class:`~bulutfon_pipeline.warehouse.backend.Transaction`).

    Batches are Arrow tables registered on the connection (DuckDB scans them in place,
    no copy) and written with ``INSERT ... BY NAME``. ``con`` is the DuckDB connection,
    for what only DuckDB does (``CHECKPOINT``).
    """

    write_failure: type[Exception] = WRITE_FAILURE

    def __init__(self, con: Connection, name: str) -> None:
        self.con = con
        self.name = name

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Connection:
        """Run one statement (``?``, or DuckDB's ``$name`` with a mapping); returns the
        connection, which is its cursor."""
        return self.con.execute(sql, params if isinstance(params, Mapping) else list(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        self.con.executemany(sql, [list(row) for row in rows])

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (``None`` without a row).

        ``fetchall``: a result left half-read makes DuckDB refuse the next ``register``.
        """
        rows = self.con.execute(sql, list(params)).fetchall()
        return rows[0][0] if rows else None

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT/UPDATE/DELETE; DuckDB returns the affected rows as a row."""
        rows = self.con.execute(sql, list(params)).fetchall()
        return int(rows[0][0]) if rows else 0

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A read query's rows as a DataFrame."""
        return self.con.execute(sql, list(params)).df()

    @contextmanager
    def batches(self, **tables: pa.Table) -> Iterator[None]:
        """Make Arrow tables queryable by name (``FROM <name>``) inside the block;
        unregistered when the block succeeds. Not after an error: the aborted transaction
        would refuse that too, hiding the real error, and the connection is closed anyway
        (a session drops its connection on any error).
        """
        for name, batch in tables.items():
            self.con.register(name, batch)
        yield
        for name in tables:
            self.con.unregister(name)

    def insert(self, table: sa.Table, batch: str) -> None:
        """Append the batch to ``table``, matching columns by name."""
        self.con.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM {batch}")  # noqa: S608

    def append(self, table: sa.Table, rows: pa.Table) -> None:
        """Append an Arrow table to ``table`` (registered for the one ``INSERT``)."""
        name = f"append_{table.name.lstrip('_')}"
        with self.batches(**{name: rows}):
            self.insert(table, name)

    def upsert(
        self,
        table: sa.Table,
        batch: str,
        *,
        keep: Sequence[str] = (),
        set_sql: Mapping[str, str] | None = None,
    ) -> None:
        """Upsert the batch (unique keys) into ``table`` by its key.

        The key is the metadata's primary key, whether or not the DDL enforces it
        (:data:`~bulutfon_pipeline.warehouse.schema.UNENFORCED_KEY_TABLES`).

        ``UPDATE ... FROM`` the rows that exist, then ``INSERT ... BY NAME`` the others.
        DuckDB's ``INSERT OR REPLACE`` / ``ON CONFLICT`` is pathologically slow on
        composite keys arriving out of storage order (20 s for 350k rows), and delete +
        re-insert of the same keys makes its COMMIT slow; this form takes well under 1 s.
        Identifiers come from the schema metadata, never from data.
        """
        keys = schema.key_columns(table)
        expressions = {k: v.replace("{new}", "b") for k, v in (set_sql or {}).items()}
        assignments = ", ".join(
            f"{column.name} = {expressions.get(column.name, 'b.' + column.name)}"
            for column in table.columns
            if column.name not in keys and column.name not in keep
        )
        match = " AND ".join(f"t.{key} = b.{key}" for key in keys)
        self.con.execute(
            f"UPDATE {table.name} AS t SET {assignments} FROM {batch} AS b WHERE {match}"  # noqa: S608
        )
        self.con.execute(
            f"INSERT INTO {table.name} BY NAME SELECT b.* FROM {batch} AS b "  # noqa: S608
            f"WHERE NOT EXISTS (SELECT 1 FROM {table.name} AS t WHERE {match})"
        )

    def replace_row(self, table: sa.Table, values: Mapping[str, Any]) -> None:
        """Insert one row, replacing the row with the same primary key."""
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.con.execute(
            f"INSERT OR REPLACE INTO {table.name} ({columns}) VALUES ({marks})",  # noqa: S608
            list(values.values()),
        )

    def create_temp_table(self, name: str, select_sql: str, params: Sequence[Any] = ()) -> None:
        """``CREATE OR REPLACE TEMP TABLE name AS select_sql``."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select_sql}", list(params))

    def drop_temp_table(self, name: str) -> None:
        """Drop a table made by :meth:`create_temp_table`."""
        self.con.execute(f"DROP TABLE {name}")

    def take_turns(self, purpose: str) -> None:  # DuckDB has one writer process anyway
        """No-op."""

    def iso_instant_sql(self, expression: str) -> str:
        """``expression`` (TIMESTAMPTZ) as ``YYYY-MM-DDTHH:MM:SSZ`` text."""
        return f"strftime({expression} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')"
