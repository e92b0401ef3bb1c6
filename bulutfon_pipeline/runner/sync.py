"""Sync, backfill, report, purge and replay: the same Dagster assets as the UI, run in-process.

Runs are recorded in ``DAGSTER_HOME`` when it is set. Each run's counts come back from its
materializations through the summaries' own ``from_metadata``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulutfon_pipeline import progress
from bulutfon_pipeline.accounts import Account
from bulutfon_pipeline.directory import DIRECTORY_ASSETS, DirectoryLoadSummary
from bulutfon_pipeline.loads import DetailLoadSummary, ListingScanResult, group_dates
from bulutfon_pipeline.recordings import RecordingsSummary
from bulutfon_pipeline.runner import runs
from bulutfon_pipeline.runner.accounts import record_outcomes, run_each, select
from bulutfon_pipeline.runner.errors import SetupError
from bulutfon_pipeline.runner.instance import CommandInstance
from bulutfon_pipeline.runner.preflight import (
    lock_wait_lines,
    preflight,
    read_settings,
    writer_lock,
)
from bulutfon_pipeline.runner.runs import account_instance, materialize, metadata, quiet_dagster
from bulutfon_pipeline.settings import LOCAL_TZ, Settings
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.change_log import ChangeRow, changes_since
from bulutfon_pipeline.warehouse.publish import PublishResult, publish_analytics

LOGGER = logging.getLogger(__name__)

#: The assets one detail run materializes (the ``cdr_details`` multi-asset).
DETAIL_ASSETS = ("cdrs", "raw_cdr_details", "call_flow_steps", "originations")


@dataclass
class SyncResult:
    """What one sync or backfill did."""

    listing: ListingScanResult | None = None
    #: each account's directory load (with the listing; its requests are not in ``api``)
    directory: list[DirectoryLoadSummary] = field(default_factory=list)
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
    #: each account's own result, when the sync loaded accounts of BULUTFON_ACCOUNTS_FILE
    by_account: dict[str, SyncResult] = field(default_factory=dict)
    #: account -> its one-line error, for the accounts that failed (the others loaded)
    failures: dict[str, str] = field(default_factory=dict)
    #: the accounts of BULUTFON_ACCOUNTS_FILE this sync loaded or tried, in its order
    accounts: list[str] = field(default_factory=list)

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

    def _add(self, other: SyncResult) -> None:
        """Add an account's result to this total."""
        if other.listing is not None:
            if self.listing is None:
                self.listing = ListingScanResult()
            for name in ("pages", "items", "new", "updated", "changed", "rejected"):
                setattr(
                    self.listing, name, getattr(self.listing, name) + getattr(other.listing, name)
                )
        self.directory.extend(other.directory)
        self.ranges.extend(other.ranges)
        self.details.extend(other.details)
        if other.recordings is not None:
            self.recordings = [*(self.recordings or []), *other.recordings]
        self._add_api(other.api)
        self.run_ids.extend(other.run_ids)


def _plan_ranges(
    warehouse: Warehouse,
    settings: Settings,
    start: dt.date | None,
    end: dt.date | None,
    *,
    pending_only: bool = False,
    start_date: dt.date | None = None,
) -> list[tuple[dt.date, dt.date]]:
    today = dt.datetime.now(LOCAL_TZ).date()
    start_date = start_date or settings.start_date
    if start is not None and end is not None and not pending_only:
        ranges = [(max(start, start_date), min(end, today))]
    else:
        first = max(start or start_date, start_date)
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
    reporter: progress.PartsReporter | None = None,
    on_wait: Callable[[str], None] | None = None,
    accounts: Sequence[str] | None = None,
) -> SyncResult:
    """Scan the listing (optional), then load every day with pending calls, for every
    account (``BULUTFON_ACCOUNTS_FILE``, or the ``default`` account without it).

    With ``start``/``end`` (a backfill) the given days are loaded even if nothing is
    pending, so ``refetch`` can reload them. Recordings are downloaded after the details
    when ``BULUTFON_DOWNLOAD_RECORDINGS`` is on. Several accounts load at the same time
    (``runner.accounts.run_each``), each in its own Dagster runs with its own client; an
    account that fails is in ``failures`` and the others load.

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
        accounts: only these accounts (names of the accounts file); default every one.

    Raises:
        SetupError, BusyError: before anything runs (an unknown account: SetupError).
        Exception: a failed run's error, with a single account; :func:`user_error` finds
            the project error in it.
    """
    started = time.monotonic()
    run_config = quiet_dagster()  # before the assets are imported: they warn on import
    chosen = select(accounts)
    settings = preflight(check_credentials=not any(a.from_file for a in chosen))
    result = SyncResult()
    installed = progress.installed(reporter) if reporter is not None else contextlib.nullcontext()
    command_instance = CommandInstance()  # the accounts' ephemeral Dagster instance

    def one(account: Account) -> SyncResult:
        began = time.monotonic()
        done = _sync_account(
            account,
            settings,
            run_config,
            command_instance,
            listing=listing,
            start=start,
            end=end,
            refetch=refetch,
            reconcile=reconcile,
        )
        done.seconds = time.monotonic() - began
        return done

    def counted(account: Account) -> SyncResult:
        """:func:`one`, then one more account done on the accounts' bar, loaded or failed."""
        try:
            return one(account)
        finally:
            progress.reporter().advance("accounts")

    with (
        writer_lock(settings, accounts=[a.name for a in chosen], on_wait=on_wait),
        lock_wait_lines(on_wait),
        installed,
        contextlib.closing(command_instance),
    ):
        if len(chosen) == 1 and not chosen[0].from_file:
            result = one(chosen[0])  # today's single account: exactly as before
        else:
            # The schema once, before the accounts' runs: their concurrent first runs
            # would each try to create it (and each run would check it again).
            with Warehouse.from_settings(settings).schema_ready():
                runs.prepare_threads()
                result.accounts = [account.name for account in chosen]
                bar = progress.reporter()
                bar.start("accounts", len(chosen))
                try:
                    result.by_account, result.failures = run_each(
                        chosen, counted, settings.accounts_at_once
                    )
                finally:
                    bar.finish("accounts")
            for done in result.by_account.values():
                result._add(done)
            # For `bulutfon-pipeline accounts`: each account's last error, or none.
            record_outcomes(Warehouse.from_settings(settings), result.accounts, result.failures)
        warehouse = Warehouse.from_settings(settings)
        # Under the lock, so no other sync writes while the copy is taken.
        if len(result.failures) < len(chosen):
            result.published = publish_for_analysts(warehouse, settings)
    result.seconds = time.monotonic() - started
    return result


def _sync_account(
    account: Account,
    settings: Settings,
    run_config: dict[str, Any],
    command_instance: CommandInstance,
    *,
    listing: bool,
    start: dt.date | None,
    end: dt.date | None,
    refetch: bool,
    reconcile: bool,
) -> SyncResult:
    """One account's sync: its listing run, then its detail runs (and recordings)."""
    from bulutfon_pipeline.assets._common import api_counts
    from bulutfon_pipeline.assets.listing import reconcile_config
    from bulutfon_pipeline.partitions import ACCOUNT_TAG, range_tags

    name = account.name
    result = SyncResult()

    def run(selection: Sequence[str], asset: str, **kwargs: Any) -> dict[str, Any]:
        # One in-process run; its id and API counters go into the result.
        done = materialize(selection, settings=settings, instance=instance, **kwargs)
        result.run_ids.append(done.run_id)
        meta = metadata(done, asset)
        result._add_api(api_counts(meta))
        if DIRECTORY_ASSETS[0] in selection:  # its requests stay apart from ``api``
            directory = metadata(done, DIRECTORY_ASSETS[0])
            result.directory.append(DirectoryLoadSummary.from_metadata(directory))
        return meta

    def config(op: str) -> dict[str, Any]:
        return {**run_config, "ops": {op: {"config": {"refetch": refetch}}}}

    with account_instance([name], command_instance) as instance:
        if listing:
            listing_config = run_config
            if reconcile and start is not None:
                listing_config = {**run_config, **reconcile_config(start, end)}
            meta = run(  # the directory too: its names, groups and hours are refreshed
                ["cdr_listing", *DIRECTORY_ASSETS],
                "cdr_listing",
                tags={ACCOUNT_TAG: name},
                run_config=listing_config,
                partition_key=name,
            )
            result.listing = ListingScanResult.from_metadata(meta)
        warehouse = Warehouse.from_settings(settings, account=name)
        warehouse.ensure_schema()
        result.ranges = _plan_ranges(
            warehouse, settings, start, end, pending_only=reconcile, start_date=account.start_date
        )
        for first, last in result.ranges:
            meta = run(
                DETAIL_ASSETS,
                "cdrs",
                tags=range_tags(first, last, name),
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
                    tags=range_tags(first, last, name),
                    run_config=config("call_recordings"),
                )
                result.recordings.append(RecordingsSummary.from_metadata(meta))
    return result


def run_report() -> Path | None:
    """Materialize ``call_report`` (the asset the UI runs); the report's path."""
    settings = read_settings()
    run = materialize(["call_report"], settings=settings, tags={}, run_config=quiet_dagster())
    path = metadata(run, "call_report").get("path")
    return Path(path) if path else None


def publish_for_analysts(warehouse: Warehouse, settings: Settings) -> PublishResult | None:
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
    start: dt.date,
    end: dt.date,
    *,
    reporter: progress.PartsReporter | None = None,
    on_wait: Callable[[str], None] | None = None,
    accounts: Sequence[str] | None = None,
) -> ReconcileResult:
    """Re-read the listing back to ``start`` (listing requests only), compare every loaded
    call of ``start..end`` with it, and re-fetch the calls that changed at the source; of
    every account, or of ``accounts`` (``on_wait`` and failures as :func:`run_sync`).

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
    sync = run_sync(start=start, end=end, reconcile=True, reporter=reporter, on_wait=on_wait,
                    accounts=accounts)  # fmt: skip
    warehouse = Warehouse.from_settings(settings)
    changes = changes_since(warehouse, since, sync.accounts or None)
    return ReconcileResult(start=start, end=end, sync=sync, changes=changes)
