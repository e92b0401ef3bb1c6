"""Many accounts in one warehouse (issue 14): an ``account`` column, text NOT NULL, first
in every table but ``_views_state`` and first in every key; the rows already there become
the account ``default``.

Each table is rebuilt rather than altered: DuckDB cannot change a primary key in place,
and only a rebuild puts ``account`` first, so that an analyst's ``SELECT *`` and the
head-equals-metadata guard see the same column order on every warehouse. Per table, in the
migration's one transaction: create ``<table>__0003`` with the new columns and key, copy
every row with ``account = 'default'``, drop the old table, rename the new one (and, on
PostgreSQL, its key constraint to the name the table's own DDL gives it,
``<table>_pkey``). A failure rolls the whole migration back (DDL is transactional on both
backends).

The views of the release before (written out below) select from these tables: they are
dropped first and ``_views_state`` is emptied, so the next ``ensure_views`` creates this
release's views (which group by account). An analyst's own view on these tables makes
PostgreSQL refuse the ``DROP TABLE``: the migration then fails, changing nothing, with
PostgreSQL's message naming the view; drop it, upgrade, create it again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The account of every row loaded before (``settings.DEFAULT_ACCOUNT``, written out).
DEFAULT_ACCOUNT = "default"
#: The marts of the release before this revision, newest-built first (a view may build on
#: an earlier one).
PREVIOUS_VIEWS = (
    "missed_calls",
    "extension_activity",
    "hourly_call_load",
    "ring_group_performance",
    "daily_call_summary",
)
#: Keys DuckDB's DDL leaves out (the loader keeps them unique; see schema.py).
UNENFORCED_ON_DUCKDB = ("cdrs", "call_flow_steps", "originations", "raw_cdr_details")
_SUFFIX = "__0003"


def _instant(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _columns() -> dict[str, tuple[list[sa.Column[object]], tuple[str, ...]]]:
    """Each table's columns at revision 0002 (without ``account``) and its key (empty:
    none), fresh objects on every call."""
    return {
        "cdr_listing": (
            [
                sa.Column("uuid", sa.String, nullable=False),
                _instant("call_time", nullable=False),
                sa.Column("call_date", sa.Date, nullable=False),
                sa.Column("direction", sa.String),
                sa.Column("caller", sa.String),
                sa.Column("callee", sa.String),
                _instant("first_seen_at", nullable=False),
                _instant("last_seen_at", nullable=False),
            ],
            ("uuid",),
        ),
        "_cdr_listing_stage": (
            [
                sa.Column("scan_id", sa.String, nullable=False),
                sa.Column("page", sa.Integer, nullable=False),
                sa.Column("uuid", sa.String, nullable=False),
                _instant("call_time", nullable=False),
                sa.Column("call_date", sa.Date, nullable=False),
                sa.Column("direction", sa.String),
                sa.Column("caller", sa.String),
                sa.Column("callee", sa.String),
            ],
            (),
        ),
        "cdrs": (
            [
                sa.Column("uuid", sa.String, nullable=False),
                sa.Column("call_type", sa.String),
                sa.Column("direction", sa.String),
                sa.Column("caller", sa.String),
                sa.Column("callee", sa.String),
                sa.Column("extension", sa.String),
                _instant("call_time", nullable=False),
                _instant("answer_time"),
                _instant("hangup_time"),
                sa.Column("call_date", sa.Date, nullable=False),
                sa.Column("answered", sa.Boolean, nullable=False),
                sa.Column("ring_seconds", sa.Integer),
                sa.Column("talk_seconds", sa.Integer),
                sa.Column("call_record", sa.String),
                sa.Column("has_recording", sa.Boolean, nullable=False),
                sa.Column("hangup_cause", sa.String),
                sa.Column("hangup_cause_code", sa.String),
                sa.Column("hangup_state", sa.String),
                sa.Column("hangup_state_code", sa.String),
                sa.Column("missing_call", sa.Boolean, nullable=False),
                sa.Column("call_price", sa.Numeric(12, 4)),
                _instant("loaded_at", nullable=False),
            ],
            ("uuid",),
        ),
        "call_flow_steps": (
            [
                sa.Column("cdr_uuid", sa.String, nullable=False),
                sa.Column("step_index", sa.Integer, nullable=False),
                sa.Column("callee", sa.String),
                _instant("start_time"),
                _instant("answer_time"),
                _instant("hangup_time"),
                sa.Column("redirection", sa.String),
                sa.Column("redirection_kind", sa.String, nullable=False),
                sa.Column("redirection_target", sa.String),
            ],
            ("cdr_uuid", "step_index"),
        ),
        "originations": (
            [
                sa.Column("cdr_uuid", sa.String, nullable=False),
                sa.Column("step_index", sa.Integer, nullable=False),
                sa.Column("attempt_index", sa.Integer, nullable=False),
                sa.Column("destination", sa.String),
                _instant("start_time"),
                _instant("answer_time"),
                _instant("hangup_time"),
                sa.Column("result", sa.String),
                sa.Column("outcome", sa.String, nullable=False),
                sa.Column("answered", sa.Boolean, nullable=False),
            ],
            ("cdr_uuid", "step_index", "attempt_index"),
        ),
        "raw_cdr_details": (
            [
                sa.Column("uuid", sa.String, nullable=False),
                _instant("fetched_at", nullable=False),
                sa.Column("payload", sa.JSON, nullable=False),
            ],
            ("uuid",),
        ),
        "load_rejects": (
            [
                sa.Column("uuid", sa.String),
                sa.Column("stage", sa.String, nullable=False),
                sa.Column("reason", sa.String, nullable=False),
                sa.Column("payload", sa.String),
                _instant("rejected_at", nullable=False),
            ],
            (),
        ),
        "call_recordings": (
            [
                sa.Column("cdr_uuid", sa.String, nullable=False),
                sa.Column("path", sa.String, nullable=False),
                sa.Column("content_type", sa.String),
                sa.Column("bytes", sa.BigInteger, nullable=False),
                sa.Column("sha256", sa.String, nullable=False),
                _instant("downloaded_at", nullable=False),
            ],
            ("cdr_uuid",),
        ),
        "cdr_changes": (
            [
                sa.Column("uuid", sa.String, nullable=False),
                sa.Column("call_date", sa.Date, nullable=False),
                sa.Column("field", sa.String, nullable=False),
                sa.Column("old_value", sa.String),
                sa.Column("new_value", sa.String),
                _instant("detected_at"),
                _instant("seen_at", nullable=False),
            ],
            ("uuid", "field", "seen_at"),
        ),
        "_cdr_refetch": (
            [
                sa.Column("uuid", sa.String, nullable=False),
                sa.Column("call_date", sa.Date, nullable=False),
                sa.Column("fields", sa.String, nullable=False),
                _instant("detected_at", nullable=False),
            ],
            ("uuid",),
        ),
        "_pipeline_state": (
            [
                sa.Column("key", sa.String, nullable=False),
                sa.Column("value", sa.String),
                _instant("updated_at", nullable=False),
            ],
            ("key",),
        ),
    }


def _rebuild(name: str, columns: list[sa.Column[object]], key: tuple[str, ...], *,
             with_account: bool) -> None:  # fmt: skip
    """Rebuild ``name`` with (or, downgrading, without) ``account`` first, keeping its rows."""
    dialect = op.get_bind().dialect.name
    names = [column.name for column in columns]
    items: list[sa.schema.SchemaItem] = list(columns)
    if with_account:
        items.insert(0, sa.Column("account", sa.String, nullable=False))
        key = ("account", *key) if key else key
    if key and not (dialect == "duckdb" and name in UNENFORCED_ON_DUCKDB):
        items.append(sa.PrimaryKeyConstraint(*key))
    new = f"{name}{_SUFFIX}"
    op.create_table(new, *items)
    listed = ", ".join(names)
    if with_account:
        op.execute(
            f"INSERT INTO {new} (account, {listed}) "  # noqa: S608 - names written out above
            f"SELECT '{DEFAULT_ACCOUNT}', {listed} FROM {name}"
        )
    else:
        op.execute(
            f"INSERT INTO {new} ({listed}) SELECT {listed} FROM {name} "  # noqa: S608
            f"WHERE account = '{DEFAULT_ACCOUNT}'"
        )
    op.drop_table(name)
    op.rename_table(new, name)
    if dialect == "postgresql" and any(isinstance(i, sa.PrimaryKeyConstraint) for i in items):
        op.execute(f"ALTER TABLE {name} RENAME CONSTRAINT {new}_pkey TO {name}_pkey")


def _drop_views() -> None:
    for view in PREVIOUS_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    # The next ensure_views creates this release's views, whatever fingerprint was kept.
    op.execute("DELETE FROM _views_state")


def upgrade() -> None:
    """Add ``account`` (``default`` for every row there) first in every table and key."""
    _drop_views()
    for name, (columns, key) in _columns().items():
        _rebuild(name, columns, key, with_account=True)


def downgrade() -> None:
    """Drop ``account`` again, keeping the ``default`` account's rows.

    Raises:
        RuntimeError: rows of another account exist (they would be lost); nothing changed.
    """
    bind = op.get_bind()
    for name in _columns():
        others = bind.exec_driver_sql(
            f"SELECT count(*) FROM {name} WHERE account <> '{DEFAULT_ACCOUNT}'"  # noqa: S608
        ).scalar()
        if others:
            raise RuntimeError(
                f"{name} holds {others} rows of accounts other than {DEFAULT_ACCOUNT!r}: "
                "a downgrade would lose them"
            )
    _drop_views()
    for name, (columns, key) in _columns().items():
        _rebuild(name, columns, key, with_account=False)
