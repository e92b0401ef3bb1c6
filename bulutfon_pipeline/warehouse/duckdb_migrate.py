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
    """:func:`.migrate.upgrade` on a raw DuckDB connection.

    Inside the caller's transaction when one is open (``BEGIN TRANSACTION``, as
    ``DuckDB.transaction`` does): it then never begins, commits or rolls back, so the
    migration and the caller's own statements (the views) commit together, and the
    caller's rollback undoes the migration too. Without one, it runs in a transaction of
    its own, committed at the end (rolled back on error).

    At the newest revision it costs two queries on the connection: a catalog lookup and a
    read of ``alembic_version``.

    Raises:
        SchemaMismatchError, WarehouseError: as :func:`.migrate.upgrade`.
    """
    head = head_revision()
    if _raw_revision(con) == head:
        return MigrationResult(head, head, "none")
    owned = not _in_transaction(con)
    if owned:
        con.begin()
    token = _LENT.set(_LentConnection(con))
    try:
        # The begin() is SQLAlchemy's marker over the transaction (a no-op here).
        with _engine().connect() as connection, connection.begin():
            result = upgrade(connection)
    except BaseException:
        if owned:
            con.rollback()
        raise
    finally:
        _LENT.reset(token)
    if owned:
        con.commit()
    return result


def _in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a transaction is open on ``con``: outside one, every statement runs in a
    transaction of its own, with an id of its own. (A probing ``BEGIN`` would fail and
    abort the open transaction.)"""
    first, second = (con.execute("SELECT txid_current()").fetchone() for _ in range(2))
    return first == second


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
