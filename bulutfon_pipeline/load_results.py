"""What the two loads (:mod:`.loads`) return: the counts of a listing scan and of a detail
load, and their round trip through an asset's materialization metadata."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["DetailLoadSummary", "ListingScanResult"]


def _instant(value: Any) -> dt.datetime | None:
    return None if value in (None, "None", "") else dt.datetime.fromisoformat(str(value))


@dataclass
class ListingScanResult:
    """What one scan of the listing did.

    It travels from the asset to the runner as materialization metadata: :meth:`to_metadata`
    and :meth:`from_metadata` are the only places that name its keys.
    """

    pages: int = 0
    items: int = 0
    new: int = 0
    updated: int = 0
    rejected: int = 0
    #: Loaded calls whose listing differs from their ``cdrs`` row (marked for re-fetch).
    changed: int = 0
    stop_before: dt.datetime | None = None
    high_water_mark: dt.datetime | None = None
    days_touched: list[dt.date] = field(default_factory=list)
    staged_chunks: int = 0
    seconds: float = 0.0

    def to_metadata(self) -> dict[str, Any]:
        """Plain values (the first 400 days listed) for the asset's metadata."""
        return {
            "pages": self.pages,
            "calls_listed": self.items,
            "new": self.new,
            "updated": self.updated,
            "changed": self.changed,
            "rejected": self.rejected,
            "days_touched": len(self.days_touched),
            "days": [day.isoformat() for day in self.days_touched[:400]],
            "staged_chunks": self.staged_chunks,
            "stopped_before": str(self.stop_before),
            "high_water_mark": str(self.high_water_mark),
            "duration_s": round(self.seconds, 3),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> ListingScanResult:
        """The result back from :meth:`to_metadata`'s values."""
        return cls(
            pages=int(meta.get("pages", 0)),
            items=int(meta.get("calls_listed", 0)),
            new=int(meta.get("new", 0)),
            updated=int(meta.get("updated", 0)),
            changed=int(meta.get("changed", 0)),
            rejected=int(meta.get("rejected", 0)),
            stop_before=_instant(meta.get("stopped_before")),
            high_water_mark=_instant(meta.get("high_water_mark")),
            days_touched=[dt.date.fromisoformat(day) for day in meta.get("days", [])],
            staged_chunks=int(meta.get("staged_chunks", 0)),
            seconds=float(meta.get("duration_s", 0.0)),
        )


#: The counts of a detail load, as named in its metadata (``calls_<name>``).
_DETAIL_COUNTS = ("listed", "pending", "fetched", "new", "updated", "rejected")


@dataclass
class DetailLoadSummary:
    """What one detail load of a date range did.

    It travels from the asset to the runner as materialization metadata: :meth:`to_metadata`
    and :meth:`from_metadata` are the only places that name its keys.
    """

    start: dt.date
    end: dt.date
    listed: int = 0
    pending: int = 0
    fetched: int = 0
    new: int = 0
    updated: int = 0
    rejected: int = 0
    batches: int = 0
    flow_steps: int = 0
    originations: int = 0
    #: ``cdr_changes`` rows written, and recordings deleted because the source removed them.
    changes: int = 0
    recordings_deleted: int = 0
    seconds: float = 0.0
    preview: pd.DataFrame | None = None

    def to_metadata(self) -> dict[str, Any]:
        """Plain values for the metadata of every asset the detail load writes."""
        return {
            "range": f"{self.start.isoformat()}..{self.end.isoformat()}",
            **{f"calls_{name}": getattr(self, name) for name in _DETAIL_COUNTS},
            "changes": self.changes,
            "recordings_deleted": self.recordings_deleted,
            "batches": self.batches,
            "duration_s": round(self.seconds, 3),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> DetailLoadSummary:
        """The summary back from :meth:`to_metadata`'s values (without the preview)."""
        first, _, last = str(meta["range"]).partition("..")
        summary = cls(
            start=dt.date.fromisoformat(first),
            end=dt.date.fromisoformat(last),
            batches=int(meta.get("batches", 0)),
            changes=int(meta.get("changes", 0)),
            recordings_deleted=int(meta.get("recordings_deleted", 0)),
            seconds=float(meta.get("duration_s", 0.0)),
        )
        for name in _DETAIL_COUNTS:
            setattr(summary, name, int(meta.get(f"calls_{name}", 0)))
        return summary
