"""The PBX's directory (issue 15): ``extensions``, ``ring_groups``,
``ring_group_members``, ``phone_numbers`` and ``phone_number_hours``, each one row per
version of an entity (``valid_from``, ``valid_to``); see ``warehouse/schema.py``. New,
empty tables: nothing already in the warehouse changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(*names: str) -> list[sa.Column[Any]]:
    """``account``, the entity's id columns and ``valid_from`` (the key), then
    ``valid_to``."""
    return [
        sa.Column("account", sa.String, primary_key=True),
        *(sa.Column(name, sa.String, primary_key=True) for name in names),
        sa.Column("valid_from", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    """Create the five directory tables, empty."""
    op.create_table(
        "extensions",
        *_key("extension_id"),
        sa.Column("number", sa.String),
        sa.Column("caller_name", sa.String),
        sa.Column("email", sa.String),
        sa.Column("did", sa.String),
        sa.Column("voice_mail", sa.Boolean),
        sa.Column("redirection_type", sa.String),
        sa.Column("destination_type", sa.String),
        sa.Column("destination_number", sa.String),
        sa.Column("external_number", sa.String),
        sa.Column("acl", sa.String),
    )
    op.create_table(
        "ring_groups",
        *_key("group_id"),
        sa.Column("number", sa.String),
        sa.Column("name", sa.String),
        sa.Column("timeout", sa.Integer),
        sa.Column("delay_time", sa.Integer),
        sa.Column("ring_duration", sa.Integer),
    )
    op.create_table(
        "ring_group_members",
        *_key("group_id", "extension_id"),
        sa.Column("extension_number", sa.String),
    )
    op.create_table(
        "phone_numbers",
        *_key("did_id"),
        sa.Column("number", sa.String),
        sa.Column("state", sa.String),
        sa.Column("destination_type", sa.String),
        sa.Column("destination_id", sa.String),
        sa.Column("destination_number", sa.String),
        sa.Column("working_hour", sa.Boolean),
    )
    op.create_table(
        "phone_number_hours",
        *_key("did_id"),
        sa.Column("weekday", sa.Integer, primary_key=True),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("shift_start", sa.Time),
        sa.Column("shift_finish", sa.Time),
        sa.Column("lunch_break_start", sa.Time),
        sa.Column("lunch_break_finish", sa.Time),
    )


def downgrade() -> None:
    """Drop the five directory tables."""
    for table in (
        "phone_number_hours",
        "phone_numbers",
        "ring_group_members",
        "ring_groups",
        "extensions",
    ):
        op.drop_table(table)
