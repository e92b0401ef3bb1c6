"""The two loads the assets run, as plain Python (no dagster).

* :func:`scan_listing` pages the CDR listing newest-first until it reaches data it already
  holds (the high-water mark minus a lookback window), staging it in chunks, then upserts
  it and moves the mark in one transaction.
  On the way it compares each listed call that is loaded already with its ``cdrs`` row
  and marks the calls that changed at the source for a new detail fetch
  (:mod:`bulutfon_pipeline.warehouse.changes`); with ``reconcile_start`` it pages back to
  that day instead, whatever the mark.
* :func:`load_details` fetches, normalizes and loads the detail of every listed call of a
  date range that is not loaded yet, or that changed, one transaction per batch; it
  stops at the next call once a stop signal came (``stop_signals``).

Accounts loading in threads of one process into one DuckDB file write it one at a time
(``Warehouse.write_turn``): their details are spooled (:mod:`.detail_spool`)
while another writes, and their listing is staged and merged in a turn too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pandas as pd

from bulutfon_pipeline import account_threads, detail_spool, progress, versions
from bulutfon_pipeline.faults import crash_point
from bulutfon_pipeline.load_results import DetailLoadSummary, ListingScanResult
from bulutfon_pipeline.normalize import (
    NormalizedDetails,
    Reject,
    normalize_details,
    normalize_listing,
)
from bulutfon_pipeline.settings import (
    DEFAULT_DETAIL_BATCH_SIZE,
    DEFAULT_LISTING_CHUNK_ROWS,
    LOCAL_TZ,
)
from bulutfon_pipeline.stop_signals import until_stopped
from bulutfon_pipeline.warehouse import DetailLoadResult, Warehouse, changes

log = logging.getLogger(__name__)

T = TypeVar("T")


class ListingClient(Protocol):
    def iter_listing_pages(self) -> Iterator[Any]: ...


class DetailClient(Protocol):
    def fetch_details(self, uuids: Iterable[Any]) -> Iterator[Any]: ...


def local_midnight(day: dt.date) -> dt.datetime:
    """The instant a local (Europe/Istanbul) day starts."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=LOCAL_TZ)


def scan_listing(
    client: ListingClient,
    warehouse: Warehouse,
    *,
    lookback: dt.timedelta,
    start_date: dt.date,
    now: dt.datetime | None = None,
    chunk_rows: int = DEFAULT_LISTING_CHUNK_ROWS,
    reconcile_start: dt.date | None = None,
    reconcile_end: dt.date | None = None,
) -> ListingScanResult:
    """Page the listing back to known data and upsert it.

    The listing is newest first with no date filter (v2 has one: :mod:`.versions` asks it
    for calls from that instant on), so the scan stops once a whole page is older than
    ``high-water mark - lookback`` (first run: ``start_date``). Late calls are caught.

    The pages are staged in the warehouse whenever ``chunk_rows`` rows have gathered, each
    chunk in its own short transaction, so memory is bounded by a chunk, not by the
    listing, and the file is not held while the API is paged. One last transaction merges
    the staged rows into ``cdr_listing`` and moves the mark: a crash anywhere before its
    COMMIT leaves ``cdr_listing`` and the mark as they were, and the rerun scans the same
    range again (clearing what the crashed scan had staged).

    Each chunk's items of calls loaded already are compared with their ``cdrs`` rows
    (:func:`~bulutfon_pipeline.warehouse.changes.detect`, no request); the calls that
    changed are marked for a new detail fetch in a transaction of their own, before the
    last one.

    Args:
        client: anything with ``iter_listing_pages()`` (the Bulutfon client).
        warehouse: the target warehouse (schema must exist).
        lookback: how far behind the mark to look for late calls.
        start_date: the earliest local day to load.
        now: the scan time stamped on rows (default: now).
        chunk_rows: stage the pages read so far once they hold this many rows.
        reconcile_start: page back to this local day (not before ``start_date``) instead
            of to the mark minus the lookback: finds changes older than the lookback.
        reconcile_end: mark only changed calls up to this local day.

    Returns:
        The counts of the scan.
    """
    started = time.monotonic()
    seen_at = now or dt.datetime.now(dt.UTC)
    stage = warehouse.begin_listing_scan()  # in a turn, if it clears a killed scan's rows
    if stage.cleared:
        log.info("cleared %d listing rows an interrupted scan had staged", stage.cleared)
    hwm = stage.high_water_mark
    floor = local_midnight(start_date)
    stop_before = max(hwm - lookback, floor) if hwm is not None else floor
    if reconcile_start is not None:
        stop_before = max(local_midnight(reconcile_start), floor)
    result = ListingScanResult(stop_before=stop_before)
    chunk: list[pd.DataFrame] = []
    chunk_size = 0
    # The items of the chunk, for change detection; nothing is loaded before a first scan.
    detect_changes = hwm is not None
    chunk_items: list[Any] = []
    changed: list[changes.ChangedCall] = []
    rejects: list[Reject] = []
    bar = progress.reporter(warehouse.account)
    bar.start("listing pages", None)
    try:
        for page in versions.listing_pages(client, since=stop_before):
            result.pages += 1
            result.items += len(page.items)
            normalized = normalize_listing(page.items)
            rejects.extend(normalized.rejects)
            frame = normalized.frame
            # ``page`` orders the copies of a uuid that sits on two pages: the first wins.
            kept = frame[frame["call_time"] >= floor].assign(page=result.pages)
            if len(kept):
                chunk.append(kept)
                chunk_size += len(kept)
                if detect_changes:
                    chunk_items.extend(_items_of(page.items, kept))
            if chunk_size >= chunk_rows:
                with warehouse.write_turn():
                    warehouse.stage_listing(stage, pd.concat(chunk, ignore_index=True))
                    if chunk_items:
                        changed += changes.detect(warehouse, chunk_items, last_day=reconcile_end)
                chunk, chunk_size, chunk_items = [], 0, []
            bar.advance("listing pages")
            crash_point("listing_page")
            if len(frame) and bool((frame["call_time"] < stop_before).all()):
                stopping = "listing page %d is wholly older than %s; stopping"
                log.info(stopping, page.page, stop_before)
                break
    finally:
        bar.finish("listing pages")
    with warehouse.write_turn():
        if chunk_items:
            changed += changes.detect(warehouse, chunk_items, last_day=reconcile_end)
        changed = _unique(changed)
        if changed:
            # Committed before the listing (and the mark): a crash in between leaves marks
            # whose re-fetch is harmless, never a change that no later scan would look at.
            changes.mark_for_refetch(warehouse, changed, detected_at=seen_at)
            log.info("%d loaded calls changed at the source; details due again", len(changed))
        result.changed = len(changed)
        rest = pd.concat(chunk, ignore_index=True) if chunk else None
        loaded = warehouse.finish_listing_scan(stage, rest, rejects=rejects, seen_at=seen_at)
    result.new, result.updated, result.rejected = loaded.new, loaded.updated, len(rejects)
    result.staged_chunks = stage.chunks
    result.high_water_mark = loaded.high_water_mark
    result.days_touched = list(loaded.days_touched)
    result.seconds = time.monotonic() - started
    return result


def _items_of(items: Sequence[Any], kept: pd.DataFrame) -> list[Any]:
    """The page's items whose uuid the scan kept (in range, normalised)."""
    uuids = set(kept["uuid"])
    return [item for item in items if isinstance(item, dict) and str(item.get("uuid")) in uuids]


def _unique(changed: list[changes.ChangedCall]) -> list[changes.ChangedCall]:
    """One entry per uuid (a call on two pages of a live listing): the first, newest."""
    seen: dict[str, changes.ChangedCall] = {}
    for call in changed:
        seen.setdefault(call.uuid, call)
    return list(seen.values())


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def load_details(
    client: DetailClient,
    warehouse: Warehouse,
    *,
    start: dt.date,
    end: dt.date,
    refetch: bool = False,
    batch_size: int = DEFAULT_DETAIL_BATCH_SIZE,
    mirror_recording_deletes: Path | None = None,
    uuids: Sequence[str] | None = None,
) -> DetailLoadSummary:
    """Fetch and load the details of the listed calls of local days ``start..end``, or of
    exactly ``uuids`` when given (the calls a webhook pushed, listed or not). Of the
    range, only calls with neither a ``cdrs`` row nor a reject are fetched, and calls
    whose listing changed since they were loaded, unless ``refetch``.
    Each batch of ``batch_size`` details is normalized and written in one transaction, so
    memory is bounded by two batches (on a server, one is written while the next is
    normalized) and a crash loses at most those two, which the next load fetches again.
    Accounts loading in threads into one DuckDB file spool their details and load them
    in turns (:mod:`.detail_spool`); into a server, each gets its share of the batches.

    Args:
        client: anything with ``fetch_details(uuids)`` streaming results.
        warehouse: the target warehouse.
        start: first local day (inclusive).
        end: last local day (inclusive).
        refetch: fetch every listed call of the range again.
        batch_size: details per transaction.
        mirror_recording_deletes: BULUTFON_DATA_DIR, to delete the recordings (file, row)
            of re-fetched calls the source removed them from; None keeps them.

    Returns:
        The counts of the load, with a small preview of loaded rows.
    """
    started = time.monotonic()
    summary = DetailLoadSummary(start=start, end=end)
    keys = versions.pending_details(client, warehouse, start, end, refetch=refetch) if (
        uuids is None) else uuids  # fmt: skip
    summary.pending, summary.listed = len(keys), warehouse.listed_count(start, end)
    bar = progress.reporter(warehouse.account)
    bar.start("call details", len(keys))
    try:
        turns = account_threads.write_turns(warehouse.is_server)
        if turns is None:  # one account, or accounts in threads into a server (their shares)
            batch_size = account_threads.shared_detail_batch(batch_size)
        segments = _segments(client.fetch_details(keys), warehouse, turns, batch_size)
        # Batch counts are added once committed (``DetailWriter``: see the docstring above).
        done = functools.partial(_batch_done, summary, bar)
        with contextlib.closing(segments):
            for segment in segments:
                _load_segment(warehouse, segment, mirror_recording_deletes, done)
    finally:
        bar.finish("call details")
    summary.seconds = time.monotonic() - started
    return summary


def _load_segment(
    warehouse: Warehouse,
    batches: Iterable[_Ready],
    mirror_recording_deletes: Path | None,
    done: Callable[..., None],
) -> None:
    """Load one segment's batches. A function of its own, so that its last batch is freed
    when it returns, not kept until the account's next segment while it fetches on (50
    accounts kept 60-70 MB of details so)."""
    with warehouse.session(), warehouse.detail_writer(mirror_recording_deletes) as w:
        for batch in batches:
            _load_batch(w, batch, done)


def _segments(
    fetched: Iterator[Any],
    warehouse: Warehouse,
    turns: threading.Semaphore | None,
    batch_size: int,
) -> Generator[Iterable[_Ready], None, None]:
    """``fetched`` whole, or spooled and given back in ``turns`` (accounts loading in
    threads into one DuckDB file: ``detail_spool``), in batches, each normalised as the
    load reaches it; either way a stop signal ends it at the next detail
    (``stop_signals``), as it is fetched and as it is loaded. An account's last spooled
    batch is made ready before its turn instead (``in_turns``)."""

    def readied(details: Iterable[Any]) -> Iterator[_Ready]:
        return map(_ready, _batched(until_stopped(details), batch_size))

    if turns is None:
        yield readied(fetched)
        return
    spooled = detail_spool.in_turns(until_stopped(fetched), turns, warehouse.path.parent,
        least=min(batch_size, account_threads.SPOOLED_DETAILS_LEAST),
        most=account_threads.SPOOLED_DETAILS_MOST, batch=batch_size,
        ready=lambda details: list(readied(details)))  # fmt: skip
    with contextlib.closing(spooled):  # gives its turn back when this generator is closed
        for segment in spooled:
            yield segment if isinstance(segment, list) else readied(segment)


@dataclass(frozen=True)
class _Ready:
    """A batch of fetched details, normalised: what ``load_details`` writes."""

    fetched_at: dt.datetime
    raw: list[tuple[str, Any]]
    detail_rejects: list[Reject]
    normalized: NormalizedDetails
    size: int  # details in the batch, failed fetches included


def _ready(batch: list[Any]) -> _Ready:
    """Normalize ``batch`` (fetched details); its failed fetches become rejects."""
    raw = [(r.uuid, r.payload) for r in batch if r.payload is not None]
    detail_rejects = [
        Reject(uuid=r.uuid, stage="detail", reason=str(r.error), payload=None)
        for r in batch
        if r.payload is None
    ]
    normalized = normalize_details([payload for _, payload in raw])
    return _Ready(dt.datetime.now(dt.UTC), raw, detail_rejects, normalized, len(batch))


def _load_batch(writer: Any, batch: _Ready, done: Callable[..., None]) -> None:
    """Hand ``batch`` to ``writer`` (a ``DetailWriter``); ``done`` adds it to the summary
    once committed."""
    writer.wait()  # the previous batch is committed: a crash now loses this one only
    crash_point("detail_batch")
    then = functools.partial(done, len(batch.raw), batch.size, batch.normalized)
    writer.submit(
        batch.raw,
        batch.normalized,
        fetched_at=batch.fetched_at,
        detail_rejects=batch.detail_rejects,
        then=then,
    )


def _batch_done(
    summary: DetailLoadSummary,
    bar: Any,
    fetched: int,
    size: int,
    normalized: Any,
    loaded: DetailLoadResult,
) -> None:
    """Add a committed batch (``normalized``: its ``NormalizedDetails``) to the summary."""
    summary.batches += 1
    summary.fetched += fetched
    summary.new += loaded.new
    summary.updated += loaded.updated
    summary.rejected += loaded.rejected
    summary.flow_steps += len(normalized.call_flow_steps)
    summary.originations += len(normalized.originations)
    summary.changes += loaded.changes
    summary.recordings_deleted += loaded.recordings_deleted
    if summary.preview is None and len(normalized.cdrs):
        summary.preview = normalized.cdrs.head(5)
    bar.advance("call details", size)


def group_dates(
    dates: Sequence[dt.date], *, max_gap_days: int = 3
) -> list[tuple[dt.date, dt.date]]:
    """Group sorted dates into inclusive ranges, merging gaps of up to ``max_gap_days``.

    A sync turns the days with pending calls into as few ranged runs as possible without
    stretching a run over long empty stretches.
    """
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(dates)):
        if ranges and (day - ranges[-1][1]).days <= max_gap_days:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges
