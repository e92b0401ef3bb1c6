"""Schema migrations (``warehouse/migrate.py``) on DuckDB and PostgreSQL (``public`` and a
schema of its own): a warehouse of the release before migrations, built from a checked-in
SQL fixture, is stamped and upgraded with every row kept; an empty database gets exactly
the metadata's tables; a second upgrade does nothing; a warehouse that is not the baseline
is refused and left alone; and the migrations' head equals the live metadata, so a schema
change without a migration fails here."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from bulutfon_pipeline.warehouse import Warehouse, duckdb_backend, migrate
from bulutfon_pipeline.warehouse import schema as schema_module
from bulutfon_pipeline.warehouse.catalog import TableShape, describe_tables
from bulutfon_pipeline.warehouse.duckdb_migrate import upgrade_duckdb
from bulutfon_pipeline.warehouse.migrate import (
    MigrationResult,
    SchemaMismatchError,
    current_revision,
    head_revision,
)
from bulutfon_pipeline.warehouse.postgres_backend import Postgres
from bulutfon_pipeline.warehouse.schema import metadata

FIXTURE = Path(__file__).parents[1] / "fixtures" / "warehouse_before_migrations.sql"
#: A warehouse of the release before accounts (revision 0002), rows from a real sync.
FIXTURE_0002 = Path(__file__).parents[1] / "fixtures" / "warehouse_0002.sql"
#: The rows the fixture inserts, per table (so a fixture that loads nothing fails).
FIXTURE_ROWS = {
    "_cdr_listing_stage": 1, "_cdr_refetch": 1, "_pipeline_state": 1, "call_flow_steps": 2,
    "call_recordings": 1, "cdr_changes": 1, "cdr_listing": 2, "cdrs": 2, "load_rejects": 1,
    "originations": 2, "raw_cdr_details": 2,
}  # fmt: skip
#: A payload whose text (key order, spacing, number spelling) must survive as it is.
RAW_PAYLOAD = (
    '{"uuid": "0d9c2a4e-0001-4b1a-9c1e-000000000001", "z_last": 1, "a_first": [1, 2.50, "ş"]}'
)
#: The keys DuckDB's DDL leaves out (schema.UNENFORCED_KEY_TABLES): PostgreSQL declares
#: them, and DuckDB files made before they left the DDL still have them.
BULK_KEYS = {
    "cdrs": "uuid",
    "call_flow_steps": "cdr_uuid, step_index",
    "originations": "cdr_uuid, step_index, attempt_index",
    "raw_cdr_details": "uuid",
}


def fixture_statements(text: str | None = None) -> list[str]:
    """The fixture's statements (``;`` at a line's end ends one), comments dropped."""
    text = FIXTURE.read_text() if text is None else text
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", body, flags=re.MULTILINE) if s.strip()]


class Target:
    """A warehouse on one backend: run SQL in it, upgrade it, read its tables and rows."""

    name: str
    schema: str | None

    def connect(self) -> Any:
        raise NotImplementedError

    def run(self, statements: list[str]) -> None:
        raise NotImplementedError

    def upgrade(self) -> MigrationResult:
        raise NotImplementedError

    def live_reference(self) -> dict[str, TableShape]:
        """The tables as the live metadata's own DDL makes them, on this backend."""
        raise NotImplementedError

    def sibling(self) -> Target:
        """An empty warehouse on the same backend."""
        raise NotImplementedError

    def describe(self) -> dict[str, TableShape]:
        with self.connect() as connection:
            return describe_tables(connection, self.schema)

    def revision(self) -> str | None:
        with self.connect() as connection:
            return current_revision(connection, self.schema)

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, as text (so any backend's values compare), sorted."""
        out = {}
        with self.connect() as connection:
            for table in self.describe():
                prefix = f'"{self.schema}".' if self.schema else ""
                result = connection.execute(sa.text(f'SELECT * FROM {prefix}"{table}"'))
                out[table] = sorted(tuple(map(str, row)) for row in result)
        return out

    def payload_text(self, uuid: str) -> str:
        prefix = f'"{self.schema}".' if self.schema else ""
        with self.connect() as connection:
            return str(
                connection.execute(
                    sa.text(
                        f"SELECT CAST(payload AS VARCHAR) FROM {prefix}raw_cdr_details "
                        "WHERE uuid = :uuid"
                    ),
                    {"uuid": uuid},
                ).scalar_one()
            )


class DuckDBTarget(Target):
    """A DuckDB file, upgraded through :func:`upgrade_duckdb` inside a transaction, as
    ``ensure_schema`` does."""

    name = "duckdb"
    schema = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "bulutfon.duckdb"

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        engine = sa.create_engine(f"duckdb:///{self.path}", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()

    def run(self, statements: list[str]) -> None:
        con = duckdb.connect(str(self.path))
        try:
            for statement in statements:
                con.execute(statement)
        finally:
            con.close()

    def upgrade(self) -> MigrationResult:
        con = duckdb.connect(str(self.path))
        try:
            con.execute("BEGIN TRANSACTION")
            result = upgrade_duckdb(con)
            con.execute("COMMIT")
            return result
        finally:
            con.close()

    def sibling(self) -> Target:
        folder = self.folder / "sibling"
        folder.mkdir()
        return DuckDBTarget(folder)

    def live_reference(self) -> dict[str, TableShape]:
        reference = DuckDBTarget(self.folder / "reference")
        reference.folder.mkdir()
        con = duckdb.connect(str(reference.path))
        try:
            for statement in duckdb_backend.create_table_statements():
                con.execute(statement)
        finally:
            con.close()
        return reference.describe()


class PostgresTarget(Target):
    """A PostgreSQL database, the warehouse in ``schema``."""

    name = "postgres"

    def __init__(self, url: str, schema: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.schema = schema

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as connection:
            yield connection

    def _in_schema(self, connection: sa.Connection, schema: str) -> None:
        connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        connection.exec_driver_sql(f'SET search_path TO "{schema}"')

    def run(self, statements: list[str]) -> None:
        assert self.schema is not None
        with self.engine.begin() as connection:
            self._in_schema(connection, self.schema)
            for statement in statements:
                connection.exec_driver_sql(statement.replace("%", "%%"))

    def upgrade(self) -> MigrationResult:
        with self.engine.connect() as connection:
            return migrate.upgrade(connection, self.schema)

    def sibling(self) -> Target:
        return PostgresTarget(self.engine.url.render_as_string(hide_password=False), "sibling")

    def live_reference(self) -> dict[str, TableShape]:
        with self.engine.begin() as connection:
            self._in_schema(connection, "live_reference")
            metadata.create_all(connection)
            return describe_tables(connection, "live_reference")


@pytest.fixture(params=["duckdb", "postgres-public", "postgres-own-schema"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "duckdb":
        return DuckDBTarget(tmp_path)
    url = request.getfixturevalue("postgres_url")
    return PostgresTarget(url, "public" if request.param == "postgres-public" else "calls wh")


def with_bulk_keys(statements: list[str]) -> list[str]:
    """The fixture's statements with the bulk tables' keys in their ``CREATE TABLE``."""
    out = []
    for statement in statements:
        for table, key in BULK_KEYS.items():
            if statement.startswith(f"CREATE TABLE IF NOT EXISTS {table} ("):
                statement = (
                    statement[: statement.rindex(")")].rstrip() + f", \n\tPRIMARY KEY ({key})\n)"
                )
        out.append(statement)
    return out


def previous_release(target: Target) -> list[str]:
    """The fixture's statements for ``target`` (PostgreSQL: with the keys it declares)."""
    statements = fixture_statements()
    return with_bulk_keys(statements) if isinstance(target, PostgresTarget) else statements


# --- (a) a warehouse of the release before migrations -------------------------------------

#: The revisions this release ships after the baseline, and the (empty) tables they add.
AFTER_BASELINE = ("0002", "0003", "0004")
#: 0004's directory tables (empty after an upgrade).
DIRECTORY = {"extensions", "ring_groups", "ring_group_members", "phone_numbers",
             "phone_number_hours"}  # fmt: skip
ADDED_TABLES = {"_views_state", *DIRECTORY}


def _kept(rows: dict[str, Any]) -> dict[str, Any]:
    """``rows`` without the tables the revisions after the baseline add (checked empty),
    and without the ``account`` that 0003 put first in every row (checked ``default``)."""
    assert all(rows[table] == [] for table in ADDED_TABLES), rows
    assert all(row[0] == "default" for table in rows for row in rows[table]), rows
    return {
        table: [row[1:] for row in value]
        for table, value in rows.items()
        if table not in ADDED_TABLES
    }


def test_previous_release_is_stamped_and_keeps_every_row(target: Target) -> None:
    target.run(previous_release(target))
    before = target.rows()
    assert {table: len(rows) for table, rows in before.items()} == FIXTURE_ROWS
    assert target.revision() is None

    result = target.upgrade()

    assert result == MigrationResult(None, head_revision(), "stamped", AFTER_BASELINE)
    assert target.revision() == head_revision()
    assert _kept(target.rows()) == before
    assert target.payload_text("0d9c2a4e-0001-4b1a-9c1e-000000000001") == RAW_PAYLOAD
    # Its tables are now exactly those of an empty database upgraded by the migrations.
    fresh = target.sibling()
    assert fresh.upgrade().action == "created"
    assert target.describe() == fresh.describe()


def test_previous_duckdb_file_with_the_old_keys_is_accepted(tmp_path: Path) -> None:
    # Files made before the bulk tables' keys left the DDL still carry them.
    target = DuckDBTarget(tmp_path)
    target.run(with_bulk_keys(fixture_statements()))
    before = target.rows()
    result = target.upgrade()
    assert result.action == "stamped"
    assert _kept(target.rows()) == before
    # 0003 rebuilt the table as the live metadata makes it on DuckDB: without the old key.
    assert target.describe()["cdrs"].primary_key == ()


def test_previous_release_missing_a_table_gets_it(tmp_path: Path) -> None:
    # An older warehouse still, which the old CREATE TABLE IF NOT EXISTS would have completed.
    target = DuckDBTarget(tmp_path)
    target.run([s for s in fixture_statements() if "_cdr_refetch" not in s])
    result = target.upgrade()
    assert result.action == "stamped"
    assert "_cdr_refetch" in target.describe()
    assert target.rows()["_cdr_refetch"] == []
    assert len(target.rows()["cdrs"]) == 2


# --- (b) an empty database, (c) twice, (d) the live metadata ------------------------------


def test_empty_database_gets_exactly_the_metadata_tables(target: Target) -> None:
    result = target.upgrade()

    assert result == MigrationResult(None, head_revision(), "created", result.applied)
    assert result.applied[0] == migrate.BASELINE_REVISION
    assert result.applied[-1] == head_revision()
    described = target.describe()
    assert {name: [c.name for c in shape.columns] for name, shape in described.items()} == {
        table.name: [c.name for c in table.columns] for table in metadata.sorted_tables
    }
    assert all(rows == [] for rows in target.rows().values())


def test_second_upgrade_does_nothing(target: Target) -> None:
    target.upgrade()
    before = target.describe()

    again = target.upgrade()

    assert again == MigrationResult(head_revision(), head_revision(), "none")
    assert not again.changed
    assert target.describe() == before
    with target.connect() as connection:
        prefix = f'"{target.schema}".' if target.schema else ""
        versions = connection.execute(sa.text(f"SELECT version_num FROM {prefix}alembic_version"))
        assert versions.all() == [(head_revision(),)]


def test_migrations_head_equals_the_live_metadata(target: Target) -> None:
    # The guard: a change to warehouse/schema.py without a migration fails here.
    target.upgrade()
    assert target.describe() == target.live_reference()


# --- (e) a warehouse that is not the baseline ---------------------------------------------


def test_warehouse_unlike_the_baseline_is_refused_and_left_alone(target: Target) -> None:
    statements = [
        s.replace("call_price NUMERIC(12, 4)", "call_price VARCHAR")
        for s in previous_release(target)
    ]
    target.run([*statements, "ALTER TABLE cdr_listing ADD COLUMN note VARCHAR"])
    before_tables, before_rows = target.describe(), target.rows()

    with pytest.raises(SchemaMismatchError) as info:
        target.upgrade()

    message = str(info.value)
    assert "cdrs.call_price: VARCHAR, expected DECIMAL(12,4)" in message
    assert "cdr_listing.note: not in the baseline (VARCHAR)" in message
    assert "left unchanged" in message
    assert target.revision() is None
    assert target.describe() == before_tables
    assert target.rows() == before_rows


def test_postgres_warehouse_without_the_keys_is_refused(postgres_url: str) -> None:
    # PostgreSQL's upserts need the bulk tables' keys: a warehouse without them is refused.
    target = PostgresTarget(postgres_url, "public")
    target.run(fixture_statements())
    with pytest.raises(SchemaMismatchError, match=r"cdrs: primary key \(none\), expected \(uuid\)"):
        target.upgrade()
    assert target.revision() is None


def test_unknown_revision_is_refused(tmp_path: Path) -> None:
    target = DuckDBTarget(tmp_path)
    target.upgrade()
    target.run(["UPDATE alembic_version SET version_num = '9999'"])
    with pytest.raises(migrate.WarehouseError, match=r"revision '9999'.*newer release"):
        target.upgrade()


# --- DuckDB: the caller's transaction -----------------------------------------------------


def test_duckdb_upgrade_runs_in_the_callers_transaction(tmp_path: Path) -> None:
    path = tmp_path / "bulutfon.duckdb"
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN TRANSACTION")
        assert upgrade_duckdb(con).action == "created"
        con.execute("ROLLBACK")  # the caller's rollback undoes the migration
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
        con.execute("BEGIN TRANSACTION")
        upgrade_duckdb(con)
        con.execute("CREATE TABLE caller_table (x INTEGER)")  # the caller's own work
        con.execute("COMMIT")
    finally:
        con.close()
    target = DuckDBTarget(tmp_path)
    assert target.revision() == head_revision()
    assert "caller_table" in target.describe()


# --- a later revision -----------------------------------------------------------------------

LATER_REVISION = '''"""Add cdrs.note."""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cdrs", sa.Column("note", sa.String))
    op.execute("UPDATE cdrs SET note = 'kept ' || uuid")


def downgrade() -> None:
    op.drop_column("cdrs", "note")
'''


@pytest.fixture
def later_revision(tmp_path: Path) -> Iterator[str]:
    """A copy of the migrations with one more revision; yields its id."""
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPT_LOCATION, folder, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    rev = f"{int(head) + 1:04d}"
    (folder / "versions" / f"{rev}_add_note.py").write_text(
        LATER_REVISION.format(rev=rev, down=head)
    )
    original = migrate.script_location
    migrate.script_location = folder
    migrate._scripts.cache_clear()
    try:
        yield rev
    finally:
        migrate.script_location = original
        migrate._scripts.cache_clear()


def test_previous_release_upgrades_through_a_later_revision(
    target: Target, later_revision: str
) -> None:
    target.run(previous_release(target))
    before = target.rows()

    result = target.upgrade()

    assert result == MigrationResult(
        None, later_revision, "stamped", (*AFTER_BASELINE, later_revision)
    )
    after = _kept(target.rows())
    assert {t: r for t, r in after.items() if t != "cdrs"} == {
        t: r for t, r in before.items() if t != "cdrs"
    }
    assert [row[:-1] for row in after["cdrs"]] == before["cdrs"]  # account is gone already
    assert sorted(row[-1] for row in after["cdrs"]) == [
        "kept 0d9c2a4e-0001-4b1a-9c1e-000000000001",
        "kept 0d9c2a4e-0001-4b1a-9c1e-000000000002",
    ]
    assert target.upgrade().action == "none"


# --- writing a revision ---------------------------------------------------------------------


@pytest.fixture
def scratch_scripts(tmp_path: Path) -> Iterator[Path]:
    """A copy of the migrations folder that the commands read and write."""
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPT_LOCATION, folder, ignore=shutil.ignore_patterns("__pycache__"))
    original = migrate.script_location
    migrate.script_location = folder
    migrate._scripts.cache_clear()
    try:
        yield folder
    finally:
        migrate.script_location = original
        migrate._scripts.cache_clear()


def test_revision_command_autogenerates_a_metadata_change(
    scratch_scripts: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.main(["upgrade", postgres_url])
    head = head_revision()
    # The live metadata with one more column, as a developer would have edited schema.py.
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["cdrs"].append_column(sa.Column("note", sa.String))
    monkeypatch.setattr(schema_module, "metadata", changed)

    migrate.main(["revision", "-m", "add cdrs.note", "--autogenerate", postgres_url])

    new = sorted((scratch_scripts / "versions").glob("0*.py"))[-1]
    assert new.name == f"{int(head) + 1:04d}_add_cdrs_note.py"
    text = new.read_text()
    assert f"down_revision: str | Sequence[str] | None = {head!r}" in text
    # Exactly the one change: the database at head equals the rest of the metadata.
    assert re.findall(r"^    op\.\w+\(.*$", text, flags=re.MULTILINE) == [
        "    op.add_column('cdrs', sa.Column('note', sa.String(), nullable=True))",
        "    op.drop_column('cdrs', 'note')",
    ]
    migrate._scripts.cache_clear()
    assert head_revision() == f"{int(head) + 1:04d}"


def test_duckdb_upgrade_outside_a_transaction_commits_its_own(tmp_path: Path) -> None:
    path = tmp_path / "bulutfon.duckdb"
    con = duckdb.connect(str(path))
    try:
        assert upgrade_duckdb(con).action == "created"
    finally:
        con.close()
    assert DuckDBTarget(tmp_path).revision() == head_revision()


FAILING_REVISION = LATER_REVISION.replace(
    "op.execute(\"UPDATE cdrs SET note = 'kept ' || uuid\")",
    'op.execute("UPDATE cdrs SET note = no_such_column")',
)


def test_failed_migration_leaves_the_previous_schema(target: Target, later_revision: str) -> None:
    # The later revision adds a column, then fails: nothing of it stays, on either backend.
    (migrate.script_location / "versions" / f"{later_revision}_add_note.py").write_text(
        FAILING_REVISION.format(rev=later_revision, down=f"{int(later_revision) - 1:04d}")
    )
    migrate._scripts.cache_clear()
    target.run(previous_release(target))
    before_tables, before_rows = target.describe(), target.rows()

    with pytest.raises(sa.exc.DBAPIError, match="no_such_column"):
        target.upgrade()

    assert target.revision() is None
    assert target.describe() == before_tables
    assert target.rows() == before_rows


# --- 0003: the release before accounts ------------------------------------------------------

#: The rows the 0002 fixture holds, per table (a real sync's, plus a killed scan's staged
#: row and a refetch mark).
FIXTURE_0002_ROWS = {
    "_cdr_listing_stage": 1, "_cdr_refetch": 1, "_pipeline_state": 1, "_views_state": 1,
    "call_flow_steps": 37, "call_recordings": 4, "cdr_changes": 2, "cdr_listing": 10,
    "cdrs": 8, "load_rejects": 2, "originations": 34, "raw_cdr_details": 9,
}  # fmt: skip


def _warehouse(target: Target, account: str) -> Warehouse:
    if isinstance(target, DuckDBTarget):
        return Warehouse(target.path, account=account)
    assert isinstance(target, PostgresTarget) and target.schema is not None
    url = target.engine.url.render_as_string(hide_password=False)
    return Warehouse.on(Postgres(url, schema=target.schema), account=account)


def test_release_before_accounts_gets_account_default_and_keeps_every_row(
    target: Target,
) -> None:
    statements = fixture_statements(FIXTURE_0002.read_text())
    target.run(with_bulk_keys(statements) if isinstance(target, PostgresTarget) else statements)
    before = target.rows()
    assert {table: len(rows) for table, rows in before.items()} == FIXTURE_0002_ROWS
    assert target.revision() == "0002"
    uuid = before["raw_cdr_details"][0][0]
    payload = target.payload_text(uuid)

    result = target.upgrade()

    assert result == MigrationResult("0002", head_revision(), "migrated", ("0003", "0004"))
    after = target.rows()
    assert all(after.pop(table) == [] for table in DIRECTORY), after
    # Every row is there, as it was, with account 'default' in front; the views' fingerprint
    # is gone (the views were dropped, the next ensure_schema makes this release's).
    assert after["_views_state"] == []
    assert {t: rows for t, rows in after.items() if t != "_views_state"} == {
        t: [("default", *row) for row in rows] for t, rows in before.items() if t != "_views_state"
    }
    assert target.payload_text(uuid) == payload  # byte-exact, as received
    described = target.describe()
    assert all(
        shape.columns[0].name == "account" and not shape.columns[0].nullable
        for name, shape in described.items()
        if name != "_views_state"
    )
    assert described["cdr_listing"].primary_key == ("account", "uuid")
    fresh = target.sibling()
    fresh.upgrade()
    assert described == fresh.describe()


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_release_before_accounts_reads_as_account_default(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # After 0003 the rows are the account 'default''s, as they were, and no other's.
    target: Target
    if backend == "duckdb":
        target = DuckDBTarget(tmp_path)
    else:
        target = PostgresTarget(request.getfixturevalue("postgres_url"), "public")
    statements = fixture_statements(FIXTURE_0002.read_text())
    target.run(with_bulk_keys(statements) if backend == "postgres" else statements)
    before = target.rows()
    default = _warehouse(target, "default")
    default.ensure_schema()
    mark = default.high_water_mark()
    assert mark is not None and mark.isoformat() == before["_pipeline_state"][0][1]
    assert default.pending_uuids(dt.date(2015, 4, 1), dt.date(2015, 4, 30)) == [
        before["_cdr_refetch"][0][0]
    ]
    summary = default.fetch_frame("SELECT account, sum(calls) AS calls FROM daily_call_summary "
                                  "GROUP BY account")  # fmt: skip
    assert summary.to_dict("records") == [{"account": "default", "calls": 8}]
    other = _warehouse(target, "izmir")
    assert other.high_water_mark() is None
    assert other.pending_uuids(dt.date(2015, 4, 1), dt.date(2015, 4, 30)) == []
