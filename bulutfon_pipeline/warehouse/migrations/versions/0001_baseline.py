"""Baseline: the tables of the first release with migrations, as that release made them.

Written out here rather than imported from ``warehouse/schema.py``: the live metadata
moves on with later revisions, this revision never changes. A DuckDB warehouse made by
the release before (``CREATE TABLE IF NOT EXISTS`` from the metadata, no
``alembic_version``) is checked against :func:`baseline_metadata` and stamped at this
revision (``bulutfon_pipeline.warehouse.migrate``).

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables whose primary key DuckDB does not enforce (its ART index made every COMMIT
#: slower as the table grew); PostgreSQL enforces them (its upserts need them). DuckDB
#: files made before that decision still carry the keys, which the baseline accepts.
UNENFORCED_ON_DUCKDB = ("cdrs", "call_flow_steps", "originations", "raw_cdr_details")


def _instant(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _tables(enforce_bulk_keys: bool) -> dict[str, list[sa.schema.SchemaItem]]:
    """Each table's columns and constraints, fresh objects on every call."""

    def key(*columns: str) -> list[sa.schema.SchemaItem]:
        return [sa.PrimaryKeyConstraint(*columns)] if enforce_bulk_keys else []

    return {
        "cdr_listing": [
            sa.Column("uuid", sa.String, primary_key=True),
            _instant("call_time", nullable=False),
            sa.Column("call_date", sa.Date, nullable=False),
            sa.Column("direction", sa.String),
            sa.Column("caller", sa.String),
            sa.Column("callee", sa.String),
            _instant("first_seen_at", nullable=False),
            _instant("last_seen_at", nullable=False),
        ],
        "_cdr_listing_stage": [
            sa.Column("scan_id", sa.String, nullable=False),
            sa.Column("page", sa.Integer, nullable=False),
            sa.Column("uuid", sa.String, nullable=False),
            _instant("call_time", nullable=False),
            sa.Column("call_date", sa.Date, nullable=False),
            sa.Column("direction", sa.String),
            sa.Column("caller", sa.String),
            sa.Column("callee", sa.String),
        ],
        "cdrs": [
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
            *key("uuid"),
        ],
        "call_flow_steps": [
            sa.Column("cdr_uuid", sa.String, nullable=False),
            sa.Column("step_index", sa.Integer, nullable=False),
            sa.Column("callee", sa.String),
            _instant("start_time"),
            _instant("answer_time"),
            _instant("hangup_time"),
            sa.Column("redirection", sa.String),
            sa.Column("redirection_kind", sa.String, nullable=False),
            sa.Column("redirection_target", sa.String),
            *key("cdr_uuid", "step_index"),
        ],
        "originations": [
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
            *key("cdr_uuid", "step_index", "attempt_index"),
        ],
        "raw_cdr_details": [
            sa.Column("uuid", sa.String, nullable=False),
            _instant("fetched_at", nullable=False),
            sa.Column("payload", sa.JSON, nullable=False),
            *key("uuid"),
        ],
        "load_rejects": [
            sa.Column("uuid", sa.String),
            sa.Column("stage", sa.String, nullable=False),
            sa.Column("reason", sa.String, nullable=False),
            sa.Column("payload", sa.String),
            _instant("rejected_at", nullable=False),
        ],
        "call_recordings": [
            sa.Column("cdr_uuid", sa.String, primary_key=True),
            sa.Column("path", sa.String, nullable=False),
            sa.Column("content_type", sa.String),
            sa.Column("bytes", sa.BigInteger, nullable=False),
            sa.Column("sha256", sa.String, nullable=False),
            _instant("downloaded_at", nullable=False),
        ],
        "cdr_changes": [
            sa.Column("uuid", sa.String, nullable=False),
            sa.Column("call_date", sa.Date, nullable=False),
            sa.Column("field", sa.String, nullable=False),
            sa.Column("old_value", sa.String),
            sa.Column("new_value", sa.String),
            _instant("detected_at"),
            _instant("seen_at", nullable=False),
            sa.PrimaryKeyConstraint("uuid", "field", "seen_at"),
        ],
        "_cdr_refetch": [
            sa.Column("uuid", sa.String, primary_key=True),
            sa.Column("call_date", sa.Date, nullable=False),
            sa.Column("fields", sa.String, nullable=False),
            _instant("detected_at", nullable=False),
        ],
        "_pipeline_state": [
            sa.Column("key", sa.String, primary_key=True),
            sa.Column("value", sa.String),
            _instant("updated_at", nullable=False),
        ],
    }


def baseline_metadata(dialect_name: str) -> sa.MetaData:
    """The baseline's tables as ``dialect_name`` gets them (DuckDB: without the bulk
    tables' keys)."""
    metadata = sa.MetaData()
    for name, items in _tables(enforce_bulk_keys=dialect_name != "duckdb").items():
        sa.Table(name, metadata, *items)
    return metadata


def upgrade() -> None:
    """Create the baseline's tables."""
    dialect_name = op.get_bind().dialect.name
    for name, items in _tables(enforce_bulk_keys=dialect_name != "duckdb").items():
        op.create_table(name, *items)


def downgrade() -> None:
    """Drop the baseline's tables (and with them every row)."""
    for name in reversed(list(_tables(enforce_bulk_keys=False))):
        op.drop_table(name)
