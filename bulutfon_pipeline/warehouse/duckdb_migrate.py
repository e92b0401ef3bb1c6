"""The schema migrations (:mod:`.migrate`) on a raw DuckDB connection, the one
``duckdb_backend.DuckDB.transaction`` yields.

DuckDB-specific, like ``duckdb_backend``: it lends the raw connection to SQLAlchemy
through duckdb-engine's own wrapper, with the transaction calls taken out, so the
migration runs in whatever transaction the caller holds.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar

import duckdb
import sqlalchemy as sa
from duckdb_engine import ConnectionWrapper
from sqlalchemy.pool import NullPool

from bulutfon_pipeline.warehouse.migrate import (
    VERSION_TABLE,
    MigrationResult,
    head_revision,
    upgrade,
)

__all__ = ["upgrade_duckdb"]


class _LentConnection(ConnectionWrapper):
    """duckdb-engine's DBAPI wrapper over a connection SQLAlchemy borrows: ``begin``,
    ``commit``, ``rollback`` and ``close`` belong to the owner, so they do nothing here."""

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def upgrade_duckdb(con: duckdb.DuckDBPyConnection) -> MigrationResult:
    """:func:`.migrate.upgrade` on a raw DuckDB connection, inside the caller's transaction.

    The caller must have begun a transaction (``BEGIN TRANSACTION``, as
    ``DuckDB.transaction`` does) and commits it: this function never begins, commits or
    rolls back, so the migration and the caller's own statements (the views) commit
    together, and on an error the caller's rollback undoes the migration too. (Without a
    transaction each statement would commit on its own and a failed migration could stop
    halfway.)

    At the newest revision it costs two queries on the connection: a catalog lookup and a
    read of ``alembic_version``.

    Raises:
        SchemaMismatchError, WarehouseError: as :func:`.migrate.upgrade`.
    """
    head = head_revision()
    if _raw_revision(con) == head:
        return MigrationResult(head, head, "none")
    token = _LENT.set(_LentConnection(con))
    try:
        # The begin() is SQLAlchemy's marker over the caller's transaction (a no-op here).
        with _engine().connect() as connection, connection.begin():
            return upgrade(connection)
    finally:
        _LENT.reset(token)


def _raw_revision(con: duckdb.DuckDBPyConnection) -> str | None:
    """The revision in ``alembic_version``, read straight on the connection (the fast
    path: SQLAlchemy's table lookup costs three times more). The catalog first: a read of a
    missing table would abort the caller's transaction."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ?",
        [VERSION_TABLE],
    ).fetchone()
    if found is None or found[0] == 0:
        return None
    rows = con.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()  # noqa: S608
    return str(rows[0][0]) if len(rows) == 1 else None


#: The connection :func:`_engine` hands out, set by :func:`upgrade_duckdb` for its call.
_LENT: ContextVar[_LentConnection] = ContextVar("lent_duckdb_connection")


@functools.cache
def _engine() -> sa.Engine:
    """One engine per process: its dialect initialises once (on its first connection),
    then each connection is the one lent for the current call."""
    return sa.create_engine("duckdb://", creator=_LENT.get, poolclass=NullPool)
