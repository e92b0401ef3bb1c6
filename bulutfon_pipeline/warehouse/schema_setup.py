"""Putting the schema in place, on either backend: tables by migration, views by fingerprint.

``Warehouse.ensure_schema`` runs before every load, so it must cost next to nothing when
everything is in place, and on PostgreSQL it must never wait for an analyst:

* **Tables** come from the Alembic migrations (:mod:`.migrate`): a fresh database is
  created at head, a warehouse of the previous release is checked and stamped, a later
  revision is applied in place; at head it costs two catalog queries.
* **Views** are recreated only when their SQL changed: the SHA-256 of every view's DDL for
  the backend's dialect is kept in ``_views_state``. Dropping
  and recreating a view takes an exclusive lock on it, which would wait for every query
  an analyst runs on it; recreated only on a release that changes the marts, a load never
  waits for a reader.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse.backend import Transaction
from bulutfon_pipeline.warehouse.views import VIEWS, Dialect

__all__ = ["VIEWS_FINGERPRINT_KEY", "ensure_views", "views_fingerprint"]

#: ``_views_state`` key of the marts' fingerprint.
VIEWS_FINGERPRINT_KEY = "marts"


def views_fingerprint(dialect: Dialect) -> str:
    """The SHA-256 of every view's DDL for ``dialect``, in creation order."""
    digest = hashlib.sha256()
    for view in VIEWS:
        digest.update(view.ddl(dialect).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _views_present(tx: Transaction) -> int:
    names = [view.name for view in VIEWS]
    marks = ", ".join("?" for _ in names)
    count = tx.scalar(
        "SELECT count(*) FROM information_schema.tables "  # noqa: S608 (constant SQL)
        f"WHERE table_type = 'VIEW' AND table_schema = current_schema() "
        f"AND table_name IN ({marks})",
        names,
    )
    return int(count or 0)


def ensure_views(tx: Transaction, dialect: Dialect) -> bool:
    """(Re)create the views in ``tx`` unless the ones in place have this release's SQL.

    Returns:
        Whether the views were (re)created.
    """
    fingerprint = views_fingerprint(dialect)
    stored = tx.scalar(
        "SELECT fingerprint FROM _views_state WHERE key = ?", [VIEWS_FINGERPRINT_KEY]
    )
    if stored == fingerprint and _views_present(tx) == len(VIEWS):
        return False
    # Dropped in reverse creation order (a view may build on an earlier one), so that a
    # view whose columns changed can be created again (CREATE OR REPLACE VIEW cannot
    # change a column's type on PostgreSQL).
    for view in reversed(VIEWS):
        tx.execute(f"DROP VIEW IF EXISTS {view.name}")
    for view in VIEWS:
        tx.execute(view.ddl(dialect))
    tx.replace_row(
        schema.views_state,
        {"key": VIEWS_FINGERPRINT_KEY, "fingerprint": fingerprint, "updated_at": datetime.now(UTC)},
    )
    return True
