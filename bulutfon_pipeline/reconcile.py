"""Reconcile: follow changes at the source older than the lookback.

A sync re-reads the listing only back to the high-water mark minus the lookback (48 h),
so a recording removed or a price corrected a month after the call escapes it. A
reconcile re-reads the listing back to a given day, which costs listing requests only,
compares every loaded call of it with the listing exactly as a sync does
(:mod:`bulutfon_pipeline.warehouse.changes`), and re-fetches the details of the calls that
changed, and only those.

It runs the same Dagster assets as a sync, with the listing's ``reconcile_start`` /
``reconcile_end`` config, so the command (``bulutfon-pipeline reconcile``) and the weekly
``bulutfon_reconcile_schedule`` take one code path. Plain Python apart from
``dagster.materialize``; the CLI parses arguments, holds the sync lock and renders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulutfon_pipeline.warehouse import Warehouse

__all__ = ["ChangeRow", "ReconcileOutcome", "listing_config", "run_reconcile"]

DETAIL_ASSETS = ("cdrs", "raw_cdr_details", "call_flow_steps", "originations")


@dataclass(frozen=True)
class ChangeRow:
    """One ``cdr_changes`` row."""

    uuid: str
    call_date: dt.date
    field: str
    old_value: str | None
    new_value: str | None


@dataclass
class ReconcileOutcome:
    """What a reconcile did.

    Attributes:
        start, end: the local days reconciled.
        listing_pages: listing pages read (the only requests besides the re-fetches).
        calls_listed: listing items read.
        calls_changed: loaded calls whose listing differed from the warehouse.
        ranges: the day ranges whose details were loaded.
        details_fetched: detail requests that returned a call.
        changes: the ``cdr_changes`` rows this reconcile wrote.
        recordings_deleted: recording files deleted because the source removed them.
    """

    start: dt.date
    end: dt.date
    listing_pages: int = 0
    calls_listed: int = 0
    calls_changed: int = 0
    ranges: list[tuple[dt.date, dt.date]] = field(default_factory=list)
    details_fetched: int = 0
    changes: list[ChangeRow] = field(default_factory=list)
    recordings_deleted: int = 0
    run_ids: list[str] = field(default_factory=list)

    def to_metadata(self) -> dict[str, Any]:
        """Counts as flat metadata (e.g. for a run's tags or a log line)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "listing_pages": self.listing_pages,
            "calls_listed": self.calls_listed,
            "calls_changed": self.calls_changed,
            "details_fetched": self.details_fetched,
            "changes": len(self.changes),
            "recordings_deleted": self.recordings_deleted,
        }


def listing_config(start: dt.date, end: dt.date | None) -> dict[str, Any]:
    """The run config that makes the ``cdr_listing`` asset reconcile ``start..end``."""
    config = {"reconcile_start": start.isoformat(), "reconcile_end": ""}
    if end is not None:
        config["reconcile_end"] = end.isoformat()
    return {"ops": {"cdr_listing": {"config": config}}}


def _metadata(result: Any, asset: str) -> dict[str, Any]:
    import dagster as dg

    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {
                key: getattr(value, "value", value)
                for key, value in event.materialization.metadata.items()
            }
    return {}


def _group_dates(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    from bulutfon_pipeline.loads import group_dates

    return group_dates(days)


def run_reconcile(
    db_path: Path,
    *,
    start: dt.date,
    end: dt.date,
    download_recordings: bool,
    run_config: Mapping[str, Any] | None = None,
    instance: Any = None,
) -> ReconcileOutcome:
    """Re-read the listing back to ``start`` and load the calls of ``start..end`` that
    changed at the source (or are not loaded yet).

    Args:
        db_path: the warehouse file.
        start: first local day to reconcile (already validated by the caller).
        end: last local day to reconcile, inclusive.
        download_recordings: also run ``call_recordings`` over the loaded ranges.
        run_config: extra run config for every run (e.g. quiet loggers).
        instance: the Dagster instance to record the runs in (None: ephemeral).

    Returns:
        What the reconcile did, with the ``cdr_changes`` rows it wrote.
    """
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from bulutfon_pipeline.assets import call_recordings, call_report, cdr_details, cdr_listing
    from bulutfon_pipeline.resources import default_resources

    assets = [cdr_listing, cdr_details, call_recordings, call_report]
    base = dict(run_config or {})
    outcome = ReconcileOutcome(start=start, end=end)
    tags = {"bulutfon/trigger": "reconcile"}
    warehouse = Warehouse(db_path)
    warehouse.ensure_schema()
    started = dt.datetime.now(dt.UTC)

    result = dg.materialize(
        assets,
        selection=["cdr_listing"],
        resources=default_resources(),
        instance=instance,
        tags=tags,
        run_config={**base, **listing_config(start, end)},
    )
    outcome.run_ids.append(result.run_id)
    listing = _metadata(result, "cdr_listing")
    outcome.listing_pages = int(listing.get("pages", 0))
    outcome.calls_listed = int(listing.get("calls_listed", 0))
    outcome.calls_changed = int(listing.get("changed", 0))

    pending = [day for day in warehouse.pending_dates() if start <= day <= end]
    outcome.ranges = _group_dates(pending)
    selections = [DETAIL_ASSETS] + ([("call_recordings",)] if download_recordings else [])
    for selection in selections:
        for first, last in outcome.ranges:
            result = dg.materialize(
                assets,
                selection=list(selection),
                resources=default_resources(),
                instance=instance,
                tags={
                    **tags,
                    ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                    ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
                },
                run_config=base,
            )
            outcome.run_ids.append(result.run_id)
            meta = _metadata(result, "cdrs")
            outcome.details_fetched += int(meta.get("calls_fetched", 0))
            outcome.recordings_deleted += int(meta.get("recordings_deleted", 0))
    outcome.changes = _changes_since(warehouse, started)
    return outcome


def _changes_since(warehouse: Warehouse, since: dt.datetime) -> list[ChangeRow]:
    with warehouse.transaction() as con:
        rows = con.execute(
            """
            SELECT uuid, call_date, field, old_value, new_value FROM cdr_changes
            WHERE seen_at >= ? ORDER BY call_date, uuid, seen_at, field
            """,
            [since],
        ).fetchall()
    return [ChangeRow(*row) for row in rows]
