"""Reading the ``cdr_changes`` audit (written by :mod:`~bulutfon_pipeline.warehouse.changes`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bulutfon_pipeline.warehouse.facade import Warehouse


@dataclass(frozen=True)
class ChangeRow:
    """One ``cdr_changes`` row, as a reconcile reports it."""

    uuid: str
    call_date: dt.date
    field: str
    old_value: str | None
    new_value: str | None


def changes_since(warehouse: Warehouse, since: dt.datetime) -> list[ChangeRow]:
    """``warehouse.account``'s ``cdr_changes`` rows seen at or after ``since``, by call
    date and uuid."""
    with warehouse.transaction() as tx:
        rows = tx.execute(
            "SELECT uuid, call_date, field, old_value, new_value FROM cdr_changes "
            "WHERE account = ? AND seen_at >= ? ORDER BY call_date, uuid, seen_at, field",
            [warehouse.account, since],
        ).fetchall()
    return [ChangeRow(*row) for row in rows]
