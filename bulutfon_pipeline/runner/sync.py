"""Sync, backfill, report, purge and replay: the same Dagster assets as the UI, run in-process.

Runs are recorded in ``DAGSTER_HOME`` when it is set. Each run's counts come back from its
materializations through the summaries' own ``from_metadata``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulutfon_pipeline import progress
from bulutfon_pipeline.loads import DetailLoadSummary, ListingScanResult, group_dates
from bulutfon_pipeline.recordings import PurgeSummary, RecordingsSummary
from bulutfon_pipeline.replay import ReplaySummary, replay_details
from bulutfon_pipeline.runner.errors import SetupError
from bulutfon_pipeline.runner.interrupts import raise_if_stopped
from bulutfon_pipeline.runner.preflight import (
    check_warehouse,
    preflight,
    read_settings,
    writer_lock,
)
from bulutfon_pipeline.settings import LOCAL_TZ, Settings
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.change_log import ChangeRow, changes_since
from bulutfon_pipeline.warehouse.errors import LOCK_WAIT_LOGGER
from bulutfon_pipeline.warehouse.publish import PublishResult, publish_analytics

#: The assets one detail run materializes (the ``cdr_details`` multi-asset).
DETAIL_ASSETS = ("cdrs", "raw_cdr_details", "call_flow_steps", "originations")


@dataclass
class SyncResult:
    """What one sync or backfill did."""

    listing: ListingScanResult | None = None
    ranges: list[tuple[dt.date, dt.date]] = field(default_factory=list)
    details: list[DetailLoadSummary] = field(default_factory=list)
    #: ``None`` when recordings are not downloaded (BULUTFON_DOWNLOAD_RECORDINGS off)
    recordings: list[RecordingsSummary] | None = None
    #: the API client's counters summed over every run (requests, retries, rate_limited…)
    api: dict[str, int] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    #: the analysts' copy published at the end (``None`` if the sync stopped before)
    published: PublishResult | None = None
    seconds: float = 0.0

    def detail_total(self, name: str) -> int:
        """A count of :class:`DetailLoadSummary` (``fetched``, ``new``…) over every range."""
        return sum(int(getattr(summary, name)) for summary in self.details)

    def recording_total(self, name: str) -> int:
        """A count of :class:`RecordingsSummary` (``downloaded``…) over every range."""
        return sum(int(getattr(summary, name)) for summary in self.recordings or [])

    @property
    def rejected(self) -> int:
        """Records rejected by the listing scan and the detail loads."""
        listed = self.listing.rejected if self.listing is not None else 0
        return listed + self.detail_total("rejected")

    def _add_api(self, counts: Mapping[str, int]) -> None:
        for name, value in counts.items():
            self.api[name] = self.api.get(name, 0) + value


def _quiet_dagster() -> dict[str, Any]:
    # The CLI shows its own progress and summary; Dagster's console logger would print
    # every event (and tracebacks for failures the CLI already explains in one line).
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    return {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _materialize(
    selection: Sequence[str],
    *,
    settings: Settings,
    tags: dict[str, str],
    run_config: dict[str, Any],
) -> Any:
    import dagster as dg

    from bulutfon_pipeline.assets import ASSETS
    from bulutfon_pipeline.assets._common import PUBLISH_DEFERRED, PUBLISH_TAG
    from bulutfon_pipeline.resources import default_resources

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    result = dg.materialize(
        list(ASSETS),
        selection=list(selection),
        resources=default_resources(settings),
        instance=instance,
        # The runner publishes the analysts' copy once, at the end, not after each run.
        tags={**tags, "bulutfon/trigger": "cli", PUBLISH_TAG: PUBLISH_DEFERRED},
        run_config=run_config,
    )
    raise_if_stopped()  # a signal between steps ends no Dagster run; stop here instead
    return result


def _metadata(result: Any, asset: str) -> dict[str, Any]:
    import dagster as dg

    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {
                key: getattr(value, "value", value)
                for key, value in event.materialization.metadata.items()
            }
    return {}


def _plan_ranges(
    warehouse: Warehouse,
    settings: Settings,
    start: dt.date | None,
    end: dt.date | None,
    *,
    pending_only: bool = False,
) -> list[tuple[dt.date, dt.date]]:
    today = dt.datetime.now(LOCAL_TZ).date()
    if start is not None and end is not None and not pending_only:
        ranges = [(max(start, settings.start_date), min(end, today))]
    else:
        first = max(start or settings.start_date, settings.start_date)
        last = min(end or today, today)
        ranges = group_dates([d for d in warehouse.pending_dates() if first <= d <= last])
    return [(a, b) for a, b in ranges if a <= b]


def run_sync(
    *,
    listing: bool = True,
    start: dt.date | None = None,
    end: dt.date | None = None,
    refetch: bool = False,
    reconcile: bool = False,
    reporter: progress.ProgressReporter | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> SyncResult:
    """Scan the listing (optional), then load every day with pending calls.

    With ``start``/``end`` (a backfill) the given days are loaded even if nothing is
    pending, so ``refetch`` can reload them. Recordings are downloaded after the details
    when ``BULUTFON_DOWNLOAD_RECORDINGS`` is on.

    Args:
        listing: scan the listing first.
        start: first local day of a backfill.
        end: last local day of a backfill (inclusive).
        refetch: fetch calls (and recordings) already loaded again.
        reconcile: with ``start``/``end``, page the listing back to ``start`` (not just the
            lookback), compare every loaded call of ``start..end`` with it, and load only
            the days with changed (or missing) calls.
        reporter: where progress goes (e.g. a progress bar); nowhere by default.
        on_wait: gets one line if another sync holds the lock (this one waits up to
            ``BULUTFON_LOCK_TIMEOUT_S``).

    Raises:
        SetupError, BusyError: before anything runs.
        Exception: a failed run's error; :func:`user_error` finds the project error in it.
    """
    started = time.monotonic()
    run_config = _quiet_dagster()  # before the assets are imported: they warn on import
    from bulutfon_pipeline.assets._common import api_counts
    from bulutfon_pipeline.assets.listing import reconcile_config
    from bulutfon_pipeline.partitions import range_tags

    settings = preflight()
    result = SyncResult()
    installed = progress.installed(reporter) if reporter is not None else contextlib.nullcontext()

    def run(selection: Sequence[str], asset: str, **kwargs: Any) -> dict[str, Any]:
        # One in-process run; its id and API counters go into the result.
        done = _materialize(selection, settings=settings, **kwargs)
        result.run_ids.append(done.run_id)
        meta = _metadata(done, asset)
        result._add_api(api_counts(meta))
        return meta

    def config(op: str) -> dict[str, Any]:
        return {**run_config, "ops": {op: {"config": {"refetch": refetch}}}}

    with writer_lock(settings, on_wait=on_wait), _lock_wait_lines(on_wait), installed:
        if listing:
            listing_config = run_config
            if reconcile and start is not None:
                listing_config = {**run_config, **reconcile_config(start, end)}
            meta = run(["cdr_listing"], "cdr_listing", tags={}, run_config=listing_config)
            result.listing = ListingScanResult.from_metadata(meta)
        warehouse = Warehouse.from_settings(settings)
        warehouse.ensure_schema()
        result.ranges = _plan_ranges(warehouse, settings, start, end, pending_only=reconcile)
        for first, last in result.ranges:
            meta = run(
                DETAIL_ASSETS,
                "cdrs",
                tags=range_tags(first, last),
                run_config=config("cdr_details"),
            )
            result.details.append(DetailLoadSummary.from_metadata(meta))
        if settings.download_recordings:
            # After the detail runs, so every recorded call of the ranges has its cdrs row.
            result.recordings = []
            for first, last in result.ranges:
                meta = run(
                    ["call_recordings"],
                    "call_recordings",
                    tags=range_tags(first, last),
                    run_config=config("call_recordings"),
                )
                result.recordings.append(RecordingsSummary.from_metadata(meta))
        # Under the lock, so no other sync writes while the copy is taken.
        result.published = _publish(warehouse, settings)
    result.seconds = time.monotonic() - started
    return result


def run_report() -> Path | None:
    """Materialize ``call_report`` (the asset the UI runs); the report's path."""
    settings = read_settings()
    run = _materialize(["call_report"], settings=settings, tags={}, run_config=_quiet_dagster())
    path = _metadata(run, "call_report").get("path")
    return Path(path) if path else None


def run_purge(
    before: dt.date, *, on_wait: Callable[[str], None] | None = None
) -> tuple[PurgeSummary, Path]:
    """Delete the recordings of calls before ``before``; the summary and the data folder.

    Raises:
        SetupError, BusyError: before anything is deleted.
    """
    from bulutfon_pipeline.recordings import purge_recordings

    settings = read_settings()
    with _locked_warehouse(settings, on_wait) as warehouse:
        summary = purge_recordings(warehouse, data_dir=settings.data_dir, before=before)
    return summary, settings.data_dir


def run_replay(
    uuids: Sequence[str] | None = None, *, on_wait: Callable[[str], None] | None = None
) -> ReplaySummary:
    """Re-normalise the stored raw payloads (of ``uuids``, default all) into the tables.

    Raises:
        SetupError, BusyError: before anything is written.
    """
    settings = read_settings()
    with _locked_warehouse(settings, on_wait) as warehouse:
        return replay_details(warehouse, uuids, batch_size=settings.detail_batch_size)


@contextlib.contextmanager
def _locked_warehouse(
    settings: Settings, on_wait: Callable[[str], None] | None = None
) -> Iterator[Warehouse]:
    """The warehouse, schema in place, under the sync lock (no sync runs meanwhile); the
    analysts' copy is published when the block succeeds.

    Raises:
        SetupError, BusyError: before anything is written.
    """
    check_warehouse(settings)
    with writer_lock(settings, on_wait=on_wait), _lock_wait_lines(on_wait):
        warehouse = Warehouse.from_settings(settings)
        warehouse.ensure_schema()
        yield warehouse
        _publish(warehouse, settings)


@contextlib.contextmanager
def _lock_wait_lines(on_wait: Callable[[str], None] | None) -> Iterator[None]:
    """Pass the warehouse's "waiting for another writer's lock" lines to ``on_wait`` for
    the block (another process, not a sync, holds the DuckDB file: an analyst's
    read-write connection, a DuckDB shell)."""
    if on_wait is None:
        yield
        return
    say = on_wait

    class _Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say(record.getMessage())

    handler = _Forward(logging.WARNING)
    LOCK_WAIT_LOGGER.addHandler(handler)
    try:
        yield
    finally:
        LOCK_WAIT_LOGGER.removeHandler(handler)


def _publish(warehouse: Warehouse, settings: Settings) -> PublishResult | None:
    """Publish the analysts' copy of a DuckDB warehouse; ``None`` for a server warehouse,
    which analysts query directly (its readers never block a load)."""
    if warehouse.is_server:
        return None
    return publish_analytics(warehouse, settings.analytics_path)


@dataclass
class ReconcileResult:
    """What a reconcile did: the sync it ran and the ``cdr_changes`` rows it wrote."""

    start: dt.date
    end: dt.date
    sync: SyncResult
    changes: list[ChangeRow]


def run_reconcile(
    start: dt.date, end: dt.date, *, reporter: progress.ProgressReporter | None = None
) -> ReconcileResult:
    """Re-read the listing back to ``start`` (listing requests only), compare every loaded
    call of ``start..end`` with it, and re-fetch the calls that changed at the source.

    Raises:
        SetupError: ``start`` is in the future, after ``end``, or before
            BULUTFON_START_DATE; or a preflight problem.
        BusyError: another sync holds the warehouse.
    """
    today = dt.datetime.now(LOCAL_TZ).date()
    if start > today:
        raise SetupError(f"--start {start} is in the future (today is {today})")
    if end < start:
        raise SetupError(f"--end {end} is before --start {start}; swap them")
    settings = read_settings()
    if start < settings.start_date:
        raise SetupError(
            f"--start {start} is before BULUTFON_START_DATE ({settings.start_date}); "
            "nothing before it is loaded"
        )
    end = min(end, today)
    since = dt.datetime.now(dt.UTC)
    sync = run_sync(start=start, end=end, reconcile=True, reporter=reporter)
    return ReconcileResult(
        start=start,
        end=end,
        sync=sync,
        changes=changes_since(Warehouse.from_settings(settings), since),
    )
