"""The warehouse's schema migrations (Alembic, ``warehouse/migrations/``), on any backend.

:func:`upgrade` brings a warehouse's tables to the newest revision, on a SQLAlchemy
connection of either backend. Three kinds of warehouse meet it:

* one at the newest revision (every load after the first): one catalog query and one read
  of ``alembic_version``, nothing written;
* an empty database (or schema): the migrations run from nothing;
* one made by the release before migrations (its tables, no ``alembic_version``): its
  tables are checked against the baseline revision (names, columns, types, nullability,
  primary keys); if they match it is stamped at the baseline and upgraded from there,
  losing nothing; if not, :class:`SchemaMismatchError` names every difference and nothing
  is changed. Baseline tables it lacks (a warehouse older still, which the old
  ``CREATE TABLE IF NOT EXISTS`` would have completed) are created first.

Only tables are migrated: the views (``warehouse/views.py``) are recreated on every
``ensure_schema``. ``docs/migrations.md`` says how to add a migration; :func:`main` has
the commands that write one and upgrade a warehouse by URL.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from bulutfon_pipeline.warehouse.catalog import (
    ColumnShape,
    TableShape,
    describe_tables,
    expected_tables,
)
from bulutfon_pipeline.warehouse.errors import WarehouseError
from bulutfon_pipeline.warehouse.migrations import SCRIPT_LOCATION

__all__ = [
    "BASELINE_REVISION",
    "VERSION_TABLE",
    "MigrationResult",
    "SchemaMismatchError",
    "baseline_metadata",
    "current_revision",
    "head_revision",
    "upgrade",
]

BASELINE_REVISION = "0001"
VERSION_TABLE = "alembic_version"
#: ``pg_advisory_xact_lock`` key serialising migrations of one PostgreSQL database
#: ("bulutfon" in ASCII plus 1), held until the migrating transaction ends.
_PG_MIGRATION_LOCK = 0x62756C7574666F01

Action = Literal["none", "created", "stamped", "migrated"]


class SchemaMismatchError(WarehouseError):
    """A warehouse without ``alembic_version`` whose tables are not the baseline's; it was
    left unchanged."""


@dataclass(frozen=True)
class MigrationResult:
    """What :func:`upgrade` did.

    ``action``: ``none`` (already at ``to_revision``), ``created`` (an empty database got
    the tables), ``stamped`` (a warehouse of the release before migrations was checked,
    stamped at the baseline, then upgraded through ``applied``) or ``migrated`` (upgraded
    from ``from_revision`` through ``applied``).
    """

    from_revision: str | None
    to_revision: str
    action: Action
    applied: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return self.action != "none"


# --- revisions ------------------------------------------------------------------------------


#: Seam for tests: the script folder (a copy with an extra revision tests a later upgrade).
script_location = SCRIPT_LOCATION


def _config(
    connection: sa.Connection | None = None, schema: str | None = None, url: str | None = None
) -> Config:
    """Alembic's configuration, built in code: no ``alembic.ini``."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes.update(connection=connection, schema=schema, url=url)
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """The revision files, read once per process."""
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision."""
    head = _scripts().get_current_head()
    assert head is not None, "warehouse/migrations/versions has no revision"
    return head


def _baseline_module() -> ModuleType:
    return _scripts().get_revision(BASELINE_REVISION).module


def baseline_metadata(dialect_name: str) -> sa.MetaData:
    """The baseline revision's tables as ``dialect_name`` gets them."""
    metadata: sa.MetaData = _baseline_module().baseline_metadata(dialect_name)
    return metadata


def _differences(
    found: dict[str, TableShape],
    expected: dict[str, TableShape],
    optional_keys: dict[str, tuple[str, ...]],
) -> list[str]:
    """What differs between a warehouse's baseline tables and the baseline's, one line each.

    ``optional_keys``: tables whose primary key may be there or not (DuckDB files made
    before their keys were dropped from the DDL keep them)."""
    lines = []
    for name, want in expected.items():
        have = found.get(name)
        if have is None:
            continue  # created before stamping
        if have.columns != want.columns:
            have_cols = {c.name: c for c in have.columns}
            want_cols = {c.name: c for c in want.columns}
            for col in want.columns:
                other = have_cols.get(col.name)
                if other is None:
                    lines.append(f"{name}.{col.name}: missing (expected {_spell(col)})")
                elif other != col:
                    lines.append(f"{name}.{col.name}: {_spell(other)}, expected {_spell(col)}")
            lines.extend(
                f"{name}.{col.name}: not in the baseline ({_spell(col)})"
                for col in have.columns
                if col.name not in want_cols
            )
            if not lines and [c.name for c in have.columns] != [c.name for c in want.columns]:
                lines.append(f"{name}: columns in another order")
        allowed = {want.primary_key, optional_keys.get(name, want.primary_key)}
        if have.primary_key not in allowed:
            lines.append(
                f"{name}: primary key ({', '.join(have.primary_key) or 'none'}), "
                f"expected ({', '.join(want.primary_key) or 'none'})"
            )
    return lines


def _spell(column: ColumnShape) -> str:
    return f"{column.type}{'' if column.nullable else ' NOT NULL'}"


# --- upgrading ----------------------------------------------------------------------------


def _version_table(connection: sa.Connection, schema: str | None) -> str:
    preparer = connection.dialect.identifier_preparer
    name = preparer.quote(VERSION_TABLE)
    return f"{preparer.quote_schema(schema)}.{name}" if schema else name


def current_revision(connection: sa.Connection, schema: str | None = None) -> str | None:
    """The warehouse's revision, ``None`` without ``alembic_version``.

    Looks the table up in the catalog before reading it: a failed read would abort the
    caller's transaction (PostgreSQL and DuckDB both do), so it is never attempted.
    """
    if not connection.dialect.has_table(connection, VERSION_TABLE, schema=schema):
        return None
    rows = connection.execute(
        sa.text(f"SELECT version_num FROM {_version_table(connection, schema)}")  # noqa: S608
    ).all()
    if len(rows) > 1:
        raise WarehouseError(f"{VERSION_TABLE} holds {len(rows)} revisions; expected one")
    return rows[0][0] if rows else None


@contextmanager
def _transaction(connection: sa.Connection) -> Iterator[None]:
    """The caller's transaction if one is open (the caller commits), else one of ours,
    committed at the end (rolled back on error)."""
    if connection.in_transaction():
        yield
        return
    with connection.begin():
        yield


def upgrade(connection: sa.Connection, schema: str | None = None) -> MigrationResult:
    """Bring the warehouse's tables to the newest revision.

    Runs in the connection's transaction when one is open (the caller commits or rolls
    back, so the migration and whatever the caller does next land together), else in a
    transaction of its own that it commits. DDL is transactional on both backends: a
    failed migration leaves the previous schema.

    Args:
        connection: a SQLAlchemy connection (``duckdb`` or ``postgresql`` dialect);
            :func:`bulutfon_pipeline.warehouse.duckdb_migrate.upgrade_duckdb` wraps a raw
            DuckDB connection.
        schema: PostgreSQL only: where the tables and ``alembic_version`` live
            (``BULUTFON_WAREHOUSE_SCHEMA``, created when missing); default the connection's
            current schema. On PostgreSQL the transaction's ``search_path`` is set to it
            (``SET LOCAL``), so the migrations create their tables there.

    Returns:
        What was done (:class:`MigrationResult`).

    Raises:
        SchemaMismatchError: the warehouse has tables but no ``alembic_version``, and they
            are not the baseline's (the message names each difference; nothing changed).
        WarehouseError: the warehouse is at a revision this release does not know (made by
            a newer release).
        ValueError: ``schema`` given on DuckDB.
    """
    if schema is not None and connection.dialect.name != "postgresql":
        raise ValueError(f"a warehouse schema is PostgreSQL's, not {connection.dialect.name}'s")
    head = head_revision()
    with _transaction(connection):
        current = current_revision(connection, schema)
        if current == head:
            return MigrationResult(current, head, "none")
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
            current = current_revision(connection, schema)  # another process may have migrated
            if current == head:
                return MigrationResult(current, head, "none")
            _use_schema(connection, schema)
        return _migrate(connection, schema, current, head)


def _use_schema(connection: sa.Connection, schema: str | None) -> None:
    """PostgreSQL: create ``schema`` when missing and make it the transaction's only
    ``search_path`` entry, so unqualified DDL lands in it."""
    if schema is None:
        return
    preparer = connection.dialect.identifier_preparer
    exists = connection.execute(
        sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
    ).first()
    if exists is None:
        connection.execute(sa.text(f"CREATE SCHEMA {preparer.quote_schema(schema)}"))
    connection.execute(
        sa.text("SELECT set_config('search_path', :path, true)"),
        {"path": preparer.quote_schema(schema)},
    )


def _migrate(
    connection: sa.Connection, schema: str | None, current: str | None, head: str
) -> MigrationResult:
    scripts = _scripts()
    config = _config(connection, schema)
    if current is not None:
        try:
            scripts.get_revision(current)
        except Exception as exc:  # alembic raises its own CommandError/ResolutionError kinds
            raise WarehouseError(
                f"the warehouse's schema is at revision {current!r}, which this release does "
                f"not know (its newest is {head!r}); was it upgraded by a newer release?"
            ) from exc
        applied = _revisions_between(scripts, current, head)
        command.upgrade(config, "head")
        return MigrationResult(current, head, "migrated", applied)
    baseline = baseline_metadata(connection.dialect.name)
    found = describe_tables(connection, schema)
    present = [table for table in baseline.sorted_tables if table.name in found]
    if not present:
        applied = _revisions_between(scripts, None, head)
        command.upgrade(config, "head")
        return MigrationResult(None, head, "created", applied)
    _check_baseline(connection, found, baseline)
    for table in baseline.sorted_tables:
        if table.name not in found:
            table.create(connection)
    command.stamp(config, BASELINE_REVISION)
    applied = _revisions_between(scripts, BASELINE_REVISION, head)
    command.upgrade(config, "head")
    return MigrationResult(None, head, "stamped", applied)


def _check_baseline(
    connection: sa.Connection, found: dict[str, TableShape], baseline: sa.MetaData
) -> None:
    expected = expected_tables(baseline, connection.dialect)
    optional: dict[str, tuple[str, ...]] = {}
    if connection.dialect.name == "duckdb":
        declared = expected_tables(baseline_metadata("postgresql"), connection.dialect)
        for name in _baseline_module().UNENFORCED_ON_DUCKDB:
            optional[name] = declared[name].primary_key
    lines = _differences(found, expected, optional)
    if lines:
        raise SchemaMismatchError(
            "the warehouse has tables but no alembic_version, and they are not those of the "
            f"baseline revision {BASELINE_REVISION}, so it was left unchanged: " + "; ".join(lines)
        )


def _revisions_between(scripts: ScriptDirectory, current: str | None, head: str) -> tuple[str, ...]:
    """The revisions an upgrade from ``current`` to ``head`` runs, oldest first."""
    revisions = scripts.iterate_revisions(head, current or "base")
    return tuple(reversed([r.revision for r in revisions]))


# --- writing a new revision ---------------------------------------------------------------


def _next_revision_id() -> str:
    return f"{int(head_revision()) + 1:04d}"


def main(argv: Sequence[str] | None = None) -> None:
    """The developer's commands, ``python -m bulutfon_pipeline.warehouse.migrate ...``:

    * ``upgrade URL [--schema S]``: :func:`upgrade` the warehouse at a SQLAlchemy URL
      (``duckdb:///path`` or ``postgresql+psycopg://...``) and print what it did.
    * ``revision -m MESSAGE [--autogenerate URL]``: write the next revision's file
      (``versions/NNNN_<message>.py``), empty or, with ``--autogenerate``, with the
      operations that take the database at URL (a PostgreSQL warehouse at the newest
      revision, in ``public``; duckdb-engine cannot reflect columns for Alembic) to the
      live metadata of ``warehouse/schema.py``. Read and finish it by hand: autogenerate
      misses primary key changes and sees a rename as a drop and an add.
    """
    parser = argparse.ArgumentParser(prog="python -m bulutfon_pipeline.warehouse.migrate")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help="upgrade the warehouse at URL to the newest revision")
    up.add_argument("url")
    up.add_argument("--schema", help="PostgreSQL schema of the warehouse (default: current)")
    revision = commands.add_parser("revision", help="write the next revision's file")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--autogenerate", metavar="URL", help="compare the database at URL")
    args = parser.parse_args(argv)
    if args.command == "upgrade":
        engine = sa.create_engine(args.url)
        try:
            with engine.connect() as connection:
                print(upgrade(connection, args.schema))
        finally:
            engine.dispose()
        return
    command.revision(
        _config(url=args.autogenerate),
        message=args.message,
        autogenerate=args.autogenerate is not None,
        rev_id=_next_revision_id(),
    )


if __name__ == "__main__":
    main()
