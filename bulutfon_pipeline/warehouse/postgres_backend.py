"""Everything PostgreSQL-specific, behind one module: connections (psycopg 3), the schema
and its ``search_path``, transactions, ``COPY`` bulk writes, ``ON CONFLICT`` upserts and
the advisory lock that keeps two syncs apart.

:class:`Postgres` implements :class:`~bulutfon_pipeline.warehouse.backend.Backend`, and
its transactions :class:`~bulutfon_pipeline.warehouse.backend.Transaction`, as
``duckdb_backend.DuckDB`` does for a file, so the concern modules run unchanged on both.

* The tables live in one schema (``BULUTFON_WAREHOUSE_SCHEMA``), created if missing; each
  connection sets ``search_path`` to it, its time zone to UTC (instants come back as
  aware UTC datetimes, as from DuckDB), ``lock_timeout``, and lz4 compression if it can.
* DDL is compiled from the SQLAlchemy metadata for PostgreSQL: ``timestamptz``, ``date``,
  ``boolean``, ``numeric(12,4)``, declared primary keys (enforced here, unlike DuckDB's
  bulk tables), and raw payloads as ``json``, which keeps the text exactly as received
  (``jsonb`` would reorder keys and drop duplicates). ``json`` values are read back as
  text, never parsed.
* A batch (an Arrow table) becomes a temporary table filled by one ``COPY ... FROM
  STDIN (FORMAT binary)`` that Arrow and numpy encode (no Python work per row), then
  ``INSERT ... SELECT`` or ``INSERT ... ON CONFLICT DO UPDATE`` into the target.
* The concern modules write ``?`` placeholders; they become psycopg's ``%s`` here.

The password of the URL never appears in a message: :attr:`Postgres.name` is the URL
with it hidden (``settings.redact_url``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import pandas as pd
import psycopg
import psycopg.errors
import pyarrow as pa
import sqlalchemy as sa
from psycopg.types.string import TextLoader

from bulutfon_pipeline.settings import redact_url
from bulutfon_pipeline.warehouse import postgres_lock, postgres_text, postgres_wait, schema
from bulutfon_pipeline.warehouse.errors import WarehouseError, WarehouseLockedError
from bulutfon_pipeline.warehouse.postgres_text import conninfo, copy_statement, pg_type, to_pyformat

__all__ = ["WRITE_FAILURE", "Postgres", "PostgresTransaction"]

log = logging.getLogger(__name__)

#: What a failed write (a full disk) raises here: the fault-injection points raise it.
WRITE_FAILURE: type[Exception] = psycopg.errors.DiskFull


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Connection(postgres_wait.QuickReplies, psycopg.Connection[Any]):
    """psycopg's connection, taking up the server's replies soon (``postgres_wait``)."""


class _Session:
    """The connection a :meth:`Postgres.session` holds."""

    def __init__(self) -> None:
        self.con: psycopg.Connection[Any] | None = None

    def release(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            con.close()


class Postgres:
    """A PostgreSQL warehouse: one schema of one database, a transaction at a time.

    Args:
        url: a SQLAlchemy URL, ``postgresql+psycopg://user:password@host/db`` (or with
            ``?host=/socket/folder``); it may hold a password, which no message shows.
        schema: the schema of the tables (created by :meth:`create_schema`).
        lock_timeout_s: how long a statement waits for a lock another transaction holds
            before :class:`WarehouseLockedError`.
    """

    is_server = True
    write_failure: type[Exception] = WRITE_FAILURE

    def __init__(self, url: str, *, schema: str = "public", lock_timeout_s: float = 120.0) -> None:
        self.schema = schema
        self.name = f"{redact_url(url)} (schema {schema})"
        self.lock_timeout_s = lock_timeout_s
        self._params = conninfo(url)
        self._session: _Session | None = None
        #: Seam for tests: how to wait between advisory-lock attempts.
        self.sleep: Callable[[float], None] = time.sleep

    # --- connections, sessions, transactions -------------------------------------------

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A new connection (``postgres_wait``): ``search_path`` on the schema, UTC, the lock
        timeout, lz4 (``postgres_text.PREFER_LZ4``), and ``json`` read back as text.

        Raises:
            WarehouseError: the server refused or could not be reached (no password shown).
        """
        options = (
            f"-c search_path={self.schema} -c TimeZone=UTC "
            f"-c lock_timeout={max(1, int(self.lock_timeout_s * 1000))}"
        )
        extra = self._params.get("options")
        params = {**self._params, "options": f"{extra} {options}" if extra else options}
        params.setdefault("application_name", "bulutfon_pipeline")
        try:
            con = _Connection.connect(autocommit=autocommit, **params)
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot open warehouse {self.name}: {_one_line(exc)}") from None
        with suppress(psycopg.Error), con.transaction():  # committed: no rollback undoes it
            con.execute(postgres_text.PREFER_LZ4)  # a speed-up only: a failure here changes nothing
        for json_type in ("json", "jsonb"):
            con.adapters.register_loader(json_type, TextLoader)
        return con

    @contextmanager
    def session(self, max_hold_s: float = 5.0) -> Iterator[None]:
        """Reuse one connection for the transactions inside the block (nested sessions
        join the outer one). ``max_hold_s`` is DuckDB's need (other processes waiting for
        the file); a server serves everyone at once, so the connection is kept throughout.
        """
        del max_hold_s
        if self._session is not None:
            yield
            return
        self._session = session = _Session()
        try:
            yield
        finally:
            self._session = None
            session.release()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        session = self._session
        if session is None:
            con = self.connect()
            try:
                yield con
            finally:
                con.close()
            return
        if session.con is None or session.con.closed:
            session.con = self.connect()
        try:
            yield session.con
        except BaseException:
            session.release()
            raise

    def _error(self, exc: psycopg.Error, what: str = "") -> WarehouseError:
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return WarehouseLockedError(
                f"warehouse {self.name}: another transaction held a lock for more than "
                f"{self.lock_timeout_s:g}s"
            )
        return WarehouseError(f"warehouse {self.name}: {what}{_one_line(exc)}")

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """``BEGIN``, yield the transaction, ``COMMIT`` (``ROLLBACK`` on error).

        Raises:
            WarehouseLockedError: a lock stayed held by another transaction for
                ``lock_timeout_s``.
            WarehouseError: any PostgreSQL failure (the transaction is rolled back, so the
                last committed state stays intact). Other exceptions propagate after
                rollback.
        """
        with self._connection() as con:
            try:
                con.execute("BEGIN")
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            try:
                yield PostgresTransaction(con, self.name, self.schema)
            except BaseException as exc:
                with suppress(psycopg.Error):
                    con.execute("ROLLBACK")
                if isinstance(exc, psycopg.Error):
                    raise self._error(exc) from exc
                raise
            try:
                con.execute("COMMIT")
            except psycopg.Error as exc:
                with suppress(psycopg.Error):
                    con.execute("ROLLBACK")
                raise self._error(exc, "commit failed: ") from exc

    # --- schema ----------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Bring the tables to the newest migration (:func:`.migrate.upgrade`, in the
        schema, which it creates) and the views to this release's SQL
        (:func:`.schema_setup.ensure_views`, under a transaction-level advisory lock, since
        concurrent loads may call it at once). At head with the views in place it writes
        nothing and takes no lock a reader holds.

        Raises:
            WarehouseError: the tables are not this project's (``SchemaMismatchError``),
                or PostgreSQL failed.
        """
        from bulutfon_pipeline.warehouse import migrate
        from bulutfon_pipeline.warehouse.schema_setup import ensure_views

        engine = sa.create_engine(
            "postgresql+psycopg://",
            creator=lambda: self.connect(autocommit=False),
            poolclass=sa.pool.NullPool,
        )
        try:
            with engine.connect() as connection:
                migrate.upgrade(connection, self.schema)
        except sa.exc.DBAPIError as exc:
            raise WarehouseError(f"warehouse {self.name}: {_one_line(exc.orig or exc)}") from None
        finally:
            engine.dispose()
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", [postgres_lock.lock_key(self.schema) ^ 1])
            ensure_views(tx, "postgresql")

    def advisory_lock(
        self,
        timeout_s: float,
        on_wait: Callable[[str], None] | None = None,
        purpose: str = "sync",
        account: str | Sequence[str] | None = None,
    ) -> AbstractContextManager[None]:
        """Hold the session ``purpose`` lock (``sync``, ``listing scan``) of each ``account``.

        Raises:
            WarehouseLockedError: still held by another session after ``timeout_s``.
        """
        return postgres_lock.advisory_lock(
            self.connect,
            key=postgres_lock.lock_keys(self.schema, purpose, account),
            name=self.name,
            timeout_s=timeout_s,
            on_wait=on_wait,
            sleep=self.sleep,
            holder_kind=purpose,
        )


# --- a transaction: SQL, COPY bulk writes, upserts ----------------------------------------


class PostgresTransaction:
    """An open PostgreSQL transaction (:class:`~bulutfon_pipeline.warehouse.backend.Transaction`).

    ``con`` is the psycopg connection.
    """

    write_failure: type[Exception] = WRITE_FAILURE

    def __init__(self, con: psycopg.Connection[Any], name: str, schema_name: str) -> None:
        self.con = con
        self.name = name
        self.schema_name = schema_name
        self._batch_columns: dict[str, list[str]] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """Run one statement (``?`` placeholders); returns its cursor."""
        if params:
            return self.con.execute(to_pyformat(sql), list(params))
        return self.con.execute(sql)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        with self.con.cursor() as cursor:
            cursor.executemany(to_pyformat(sql), [list(row) for row in rows])

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (``None`` without a row)."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT/UPDATE/DELETE; the rows it affected."""
        return max(self.execute(sql, params).rowcount, 0)

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A read query's rows as a DataFrame."""
        cursor = self.execute(sql, params)
        names = [column.name for column in cursor.description or []]
        return pd.DataFrame(cursor.fetchall(), columns=names)

    @contextmanager
    def batches(self, **tables: pa.Table) -> Iterator[None]:
        """Make Arrow tables queryable by name: each a temporary table (dropped at the end
        of the block, or with the transaction) filled by one ``COPY``."""
        for name, batch in tables.items():
            columns = ", ".join(f"{field.name} {pg_type(field.type)}" for field in batch.schema)
            self.con.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
            self._copy(name, batch)
            self._batch_columns[name] = list(batch.column_names)
        yield
        for name in tables:
            self.con.execute(f"DROP TABLE {name}")
            del self._batch_columns[name]

    def _columns(self, table: sa.Table, batch: str) -> list[str]:
        present = set(self._batch_columns.get(batch) or self._temp_columns(batch))
        return [column.name for column in table.columns if column.name in present]

    def _temp_columns(self, name: str) -> list[str]:
        rows = self.con.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [f"pg_temp.{name}"],
        ).fetchall()
        return [name for (name,) in rows]

    def insert(self, table: sa.Table, batch: str) -> None:
        """``INSERT INTO table (columns) SELECT columns FROM batch``."""
        names = ", ".join(self._columns(table, batch))
        self.con.execute(
            f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {batch}"  # noqa: S608
        )

    def append(self, table: sa.Table, rows: pa.Table) -> None:
        """``COPY`` an Arrow table straight into ``table`` (no temporary table)."""
        self._copy(table.name, rows, table)

    def _copy(self, name: str, rows: pa.Table, table: sa.Table | None = None) -> None:
        """One ``COPY`` of ``rows`` into ``name`` (its data made before the COPY starts)."""
        if rows.num_rows:
            sql, data = copy_statement(name, rows, table)
            with self.con.cursor().copy(sql) as copy:
                copy.write(data)

    def upsert(
        self,
        table: sa.Table,
        batch: str,
        *,
        keep: Sequence[str] = (),
        set_sql: Mapping[str, str] | None = None,
    ) -> None:
        """``INSERT ... ON CONFLICT (key) DO UPDATE``: atomic against concurrent loads of
        the same keys. Identifiers come from the schema metadata, never from data."""
        keys = schema.key_columns(table)
        columns = self._columns(table, batch)
        expressions = {k: v.replace("{new}", "excluded") for k, v in (set_sql or {}).items()}
        updated = [name for name in columns if name not in keys and name not in keep]
        values = {name: expressions.get(name, f"excluded.{name}") for name in updated}
        assignments = ", ".join(f"{name} = {value}" for name, value in values.items())
        # Unchanged rows are left alone: no new row version, no index update (a reload
        # of the same details rewrites only what changed). json has no equality: as text.
        text = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
        changed = " OR ".join(
            f"t.{name}::text IS DISTINCT FROM ({value})::text"
            if name in text
            else f"t.{name} IS DISTINCT FROM {value}"
            for name, value in values.items()
        )
        action = f"DO UPDATE SET {assignments} WHERE {changed}" if assignments else "DO NOTHING"
        names = ", ".join(columns)
        self.con.execute(
            f"INSERT INTO {table.name} AS t ({names}) SELECT {names} FROM {batch} "  # noqa: S608
            f"ON CONFLICT ({', '.join(keys)}) {action}"
        )

    def replace_row(self, table: sa.Table, values: Mapping[str, Any]) -> None:
        """Insert one row, replacing the row with the same primary key."""
        keys = schema.key_columns(table)
        assignments = ", ".join(f"{name} = excluded.{name}" for name in values if name not in keys)
        self.con.execute(
            f"INSERT INTO {table.name} ({', '.join(values)}) "  # noqa: S608
            f"VALUES ({', '.join('%s' for _ in values)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {assignments}",
            list(values.values()),
        )

    def create_temp_table(self, name: str, select_sql: str, params: Sequence[Any] = ()) -> None:
        """``name`` becomes a temporary table of the query's rows, dropped at COMMIT."""
        self.con.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        self.execute(f"CREATE TEMP TABLE {name} ON COMMIT DROP AS {select_sql}", params)

    def drop_temp_table(self, name: str) -> None:
        """Drop a table made by :meth:`create_temp_table`."""
        self.con.execute(f"DROP TABLE pg_temp.{name}")

    def take_turns(self, purpose: str) -> None:
        """Hold the schema's ``purpose`` lock until the transaction ends (see ``Transaction``)."""
        self.execute(
            "SELECT pg_advisory_xact_lock(?)", [postgres_lock.lock_key(self.schema_name, purpose)]
        )

    def iso_instant_sql(self, expression: str) -> str:
        """``expression`` (timestamptz) as ``YYYY-MM-DDTHH:MM:SSZ`` text."""
        return f"""to_char({expression} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
