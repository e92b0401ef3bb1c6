"""The views' fingerprint: ``_views_state``, so that ``ensure_schema`` recreates the views
only when their SQL changes (recreating a view waits for every analyst's query on it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``_views_state`` (empty: the next ``ensure_schema`` recreates the views)."""
    op.create_table(
        "_views_state",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop ``_views_state``."""
    op.drop_table("_views_state")
