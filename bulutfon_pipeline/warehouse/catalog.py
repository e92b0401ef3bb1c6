"""The warehouse's tables as a database's catalog tells them, on either backend.

:func:`describe_tables` reads ``information_schema`` (which DuckDB and PostgreSQL both
have; duckdb-engine cannot reflect columns through SQLAlchemy's inspector) into
:class:`TableShape` records with canonical type names, and :func:`expected_tables` says
what a ``MetaData`` would look like there, so that two warehouses, or a warehouse and a
metadata, compare with ``==``. Used by the migrations (:mod:`.migrate`) and their tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

__all__ = ["ColumnShape", "TableShape", "describe_tables", "expected_tables"]


@dataclass(frozen=True)
class ColumnShape:
    """A column as the catalog tells it: name, canonical type, nullability."""

    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class TableShape:
    """A table's columns (in order) and primary key columns (in key order)."""

    columns: tuple[ColumnShape, ...]
    primary_key: tuple[str, ...]


# --- the catalog --------------------------------------------------------------------------

_TYPE_SYNONYMS = {"CHARACTER VARYING": "VARCHAR", "NUMERIC": "DECIMAL"}


def _canonical_type(
    data_type: str, length: int | None, precision: int | None, scale: int | None
) -> str:
    name = data_type.upper()
    name = _TYPE_SYNONYMS.get(name, name)
    if name.startswith("DECIMAL"):
        return f"DECIMAL({precision},{scale})"
    if name == "VARCHAR" and length:
        return f"VARCHAR({length})"
    return name


def _metadata_type(column: sa.Column[object], dialect: sa.Dialect) -> str:
    kind = column.type
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
        return f"DECIMAL({kind.precision},{kind.scale})"
    if isinstance(kind, sa.String) and kind.length:
        return f"VARCHAR({kind.length})"
    compiled = kind.compile(dialect=dialect).upper()
    return _TYPE_SYNONYMS.get(compiled, compiled)


def describe_tables(connection: sa.Connection, schema: str | None = None) -> dict[str, TableShape]:
    """Every base table of ``schema`` (default: the connection's current schema) but
    Alembic's ``alembic_version``, read from ``information_schema`` (the same on both backends).

    Types are canonical (``VARCHAR``, ``DECIMAL(12,4)``, ``TIMESTAMP WITH TIME ZONE``...),
    so two tables compare equal when the backend made them alike.
    """
    where = {"schema": schema}
    columns = connection.execute(
        sa.text(
            "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, "
            "c.character_maximum_length, c.numeric_precision, c.numeric_scale "
            "FROM information_schema.columns AS c "
            "JOIN information_schema.tables AS t "
            "ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema "
            "AND t.table_name = c.table_name "
            "WHERE t.table_type = 'BASE TABLE' AND c.table_catalog = current_database() "
            "AND c.table_schema = coalesce(:schema, current_schema()) "
            "ORDER BY c.table_name, c.ordinal_position"
        ),
        where,
    ).all()
    keys = connection.execute(
        sa.text(
            "SELECT tc.table_name, k.column_name "
            "FROM information_schema.table_constraints AS tc "
            "JOIN information_schema.key_column_usage AS k "
            "ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema "
            "AND k.table_name = tc.table_name "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_catalog = current_database() "
            "AND tc.table_schema = coalesce(:schema, current_schema()) "
            "ORDER BY tc.table_name, k.ordinal_position"
        ),
        where,
    ).all()
    found: dict[str, list[ColumnShape]] = {}
    for table, name, data_type, nullable, length, precision, scale in columns:
        if table != "alembic_version":
            shape = ColumnShape(
                name, _canonical_type(data_type, length, precision, scale), nullable == "YES"
            )
            found.setdefault(table, []).append(shape)
    primary: dict[str, list[str]] = {}
    for table, name in keys:
        primary.setdefault(table, []).append(name)
    return {
        table: TableShape(tuple(cols), tuple(primary.get(table, ())))
        for table, cols in sorted(found.items())
    }


def expected_tables(metadata: sa.MetaData, dialect: sa.Dialect) -> dict[str, TableShape]:
    """``metadata``'s tables as :func:`describe_tables` reads them once ``dialect`` made them
    (primary keys as declared: ``ddl_if`` is not consulted)."""
    shapes = {
        table.name: TableShape(
            tuple(
                ColumnShape(c.name, _metadata_type(c, dialect), bool(c.nullable)) for c in table.c
            ),
            tuple(c.name for c in table.primary_key.columns),
        )
        for table in metadata.sorted_tables
    }
    return dict(sorted(shapes.items()))
