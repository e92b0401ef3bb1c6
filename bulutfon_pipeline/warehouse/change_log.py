"""Reading the ``cdr_changes`` audit (written by :mod:`~bulutfon_pipeline.warehouse.changes`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from bulutfon_pipeline.warehouse.backend import KEYS_SQL
from bulutfon_pipeline.warehouse.facade import Warehouse


@dataclass(frozen=True)
class ChangeRow:
    """One ``cdr_changes`` row, as a reconcile reports it."""

    uuid: str
    call_date: dt.date
    field: str
    old_value: str | None
    new_value: str | None
    account: str


def changes_since(
    warehouse: Warehouse, since: dt.datetime, accounts: Sequence[str] | None = None
) -> list[ChangeRow]:
    """The ``cdr_changes`` rows of ``accounts`` (default ``warehouse.account``) seen at or
    after ``since``, by account, call date and uuid."""
    with warehouse.transaction() as tx:
        rows = tx.execute(
            "SELECT uuid, call_date, field, old_value, new_value, account FROM cdr_changes "  # noqa: S608
            f"WHERE account IN ({KEYS_SQL}) AND seen_at >= ? "
            "ORDER BY account, call_date, uuid, seen_at, field",
            [list(accounts or [warehouse.account]), since],
        ).fetchall()
    return [ChangeRow(*row) for row in rows]
