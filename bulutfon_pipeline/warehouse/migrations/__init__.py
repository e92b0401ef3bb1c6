"""The warehouse's Alembic migrations: ``env.py`` and ``versions/`` (one file per schema
change, ``0001_baseline.py`` first), run by :mod:`bulutfon_pipeline.warehouse.migrate`.

Importing this package registers Alembic's implementation for duckdb-engine's ``duckdb``
dialect, which Alembic does not ship: DuckDB speaks PostgreSQL's DDL and has
transactional DDL, so it is PostgreSQL's implementation under DuckDB's name.
"""

from __future__ import annotations

from pathlib import Path

from alembic.ddl.postgresql import PostgresqlImpl

__all__ = ["SCRIPT_LOCATION", "DuckDBImpl"]

#: The script folder Alembic reads (``env.py``, ``script.py.mako``, ``versions/``).
SCRIPT_LOCATION = Path(__file__).parent


class DuckDBImpl(PostgresqlImpl):
    """Alembic's operations on DuckDB (registered by name when this class is defined)."""

    __dialect__ = "duckdb"
