"""``cdr_listing`` and the high-water mark: staging a scan, merging it, moving the mark.

A scan stages its pages in chunks (:func:`stage_listing`, one short transaction each, so
the file is not held while the API is paged) and merges them in one last transaction
(:func:`finish_listing_scan`) that also moves the high-water mark and deletes the staged
rows: until that COMMIT, ``cdr_listing`` and the mark are exactly as before the scan, and
the scan's memory is bounded by a chunk, not the listing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import uuid4

import pandas as pd

from bulutfon_pipeline.faults import crash_point
from bulutfon_pipeline.normalize import NormalizedListing, Reject
from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse._common import utc
from bulutfon_pipeline.warehouse.backend import Backend, Transaction, to_arrow, with_account
from bulutfon_pipeline.warehouse.errors import WarehouseError
from bulutfon_pipeline.warehouse.rejects import write_rejects

__all__ = [
    "ListingLoadResult",
    "ListingStage",
    "begin_listing_scan",
    "finish_listing_scan",
    "high_water_mark",
    "read_high_water_mark",
    "stage_listing",
    "upsert_listing",
]


@dataclass(frozen=True)
class ListingLoadResult:
    """What :meth:`Warehouse.finish_listing_scan` (or :meth:`~Warehouse.upsert_listing`) did.

    Attributes:
        new: uuids not listed before.
        updated: uuids listed before whose listed fields changed.
        unchanged: uuids listed before, unchanged (only ``last_seen_at`` moved).
        rejected: listing rejects written.
        high_water_mark: the committed ``listing_high_water_mark`` after the load.
        days_touched: the distinct local ``call_date`` of the rows loaded, ascending.
    """

    new: int
    updated: int
    unchanged: int
    rejected: int
    high_water_mark: datetime | None
    days_touched: tuple[date, ...] = ()


@dataclass
class ListingStage:
    """A listing scan in progress, whose rows wait in ``_cdr_listing_stage``.

    Made by :meth:`Warehouse.begin_listing_scan`; :meth:`Warehouse.stage_listing` counts
    what it stages here, and :meth:`Warehouse.finish_listing_scan` checks the count.

    Attributes:
        scan_id: keys this scan's staged rows.
        high_water_mark: the committed mark when the scan began.
        cleared: staged rows of earlier scans (killed mid-scan) deleted at the start.
        staged_rows: rows staged so far.
        chunks: staging transactions so far.
    """

    scan_id: str
    high_water_mark: datetime | None
    cleared: int = 0
    staged_rows: int = 0
    chunks: int = 0


def begin_listing_scan(
    db: Backend,
    *,
    account: str,
    write_turn: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> ListingStage:
    """Start a listing scan of ``account``: read its mark; delete what its earlier scans
    left staged, if anything, while holding ``write_turn()``.

    Staged rows of another scan of the account are those of a scan killed before its last
    transaction (another account's scans are left alone):
    nothing of them was committed to ``cdr_listing``. (Were that scan still running, its
    :func:`finish_listing_scan` would find its rows gone and fail, committing nothing.)
    A scan that finds nothing staged (as every scan after a finished one does) writes
    nothing, so it takes no turn: 50 accounts starting their scans in turns held the
    turns 2 s (``benchmarks/ANALYSIS.md``, session 33).

    Returns:
        The new scan, with the committed high-water mark.
    """
    staged = f"FROM {schema.cdr_listing_stage.name} WHERE account = ?"
    with db.transaction() as tx:
        left = tx.scalar(f"SELECT count(*) {staged}", [account])
        mark = read_high_water_mark(tx, account=account)
    cleared = 0
    if left:
        with write_turn(), db.transaction() as tx:
            cleared = tx.write(f"DELETE {staged}", [account])
    return ListingStage(scan_id=uuid4().hex, high_water_mark=mark, cleared=int(cleared))


def stage_listing(db: Backend, stage: ListingStage, frame: pd.DataFrame, *, account: str) -> int:
    """Stage one chunk of a scan's listing rows, in its own transaction.

    Args:
        stage: the scan (:func:`begin_listing_scan`); its counts are updated.
        frame: :data:`~bulutfon_pipeline.normalize.LISTING_COLUMNS` plus ``page``, the
            page's 1-based position in the scan; unique uuids within a page. A uuid
            staged from two pages keeps the row of the lower ``page``.

    Returns:
        Rows staged.

    Raises:
        WarehouseError: the write failed and was rolled back.
    """
    if not len(frame):
        return 0
    with db.transaction() as tx:
        staged = _stage_rows(tx, stage, frame, account)
    stage.staged_rows += staged
    stage.chunks += 1
    return staged


def _stage_rows(tx: Transaction, stage: ListingStage, frame: pd.DataFrame, account: str) -> int:
    table = schema.cdr_listing_stage
    rows = with_account(to_arrow(frame.assign(scan_id=stage.scan_id), table), account)
    with tx.batches(stage_batch=rows):
        tx.insert(table, "stage_batch")
    return len(frame)


def finish_listing_scan(
    db: Backend,
    stage: ListingStage,
    rest: pd.DataFrame | None = None,
    *,
    rejects: Sequence[Reject] = (),
    seen_at: datetime,
    account: str,
) -> ListingLoadResult:
    """Merge a scan's staged rows into ``cdr_listing`` and move the mark, in ONE transaction.

    Stages ``rest`` (the last, partial chunk) first, in the same transaction. A uuid
    staged from two pages keeps its row from the first (newest) page. New uuids get
    ``first_seen_at = last_seen_at = seen_at``; known ones keep ``first_seen_at`` and move
    ``last_seen_at`` forward. ``listing_high_water_mark`` becomes the newest ``call_time``
    ever listed; the listing rejects are written; the scan's staged rows are deleted.

    Args:
        stage: the scan (:func:`begin_listing_scan`).
        rest: rows not staged yet, as for :func:`stage_listing`.
        rejects: the scan's listing rejects.
        seen_at: when the listing was read (aware).

    Returns:
        Counts, the committed high-water mark and the local days of the rows.

    Raises:
        WarehouseError: the load failed and was rolled back, e.g. because another scan
            cleared this scan's staged rows meanwhile.
    """
    seen_at = utc(seen_at, "seen_at")
    with db.transaction() as tx:
        expected = stage.staged_rows
        if rest is not None and len(rest):
            expected += _stage_rows(tx, stage, rest, account)
        result = _merge_listing_stage(tx, stage.scan_id, expected, seen_at, account)
        rejected = write_rejects(tx, rejects, account=account)
        crash_point("before_watermark_commit", tx.write_failure)
    crash_point("after_watermark_commit")
    return dataclasses.replace(result, rejected=rejected)


_CHANGED = """(
    l.call_time IS DISTINCT FROM b.call_time
    OR l.call_date IS DISTINCT FROM b.call_date
    OR l.direction IS DISTINCT FROM b.direction
    OR l.caller IS DISTINCT FROM b.caller
    OR l.callee IS DISTINCT FROM b.callee)"""


def _merge_listing_stage(
    tx: Transaction, scan_id: str, expected: int, seen_at: datetime, account: str
) -> ListingLoadResult:
    staged = tx.scalar(
        "SELECT count(*) FROM _cdr_listing_stage WHERE account = ? AND scan_id = ?",
        [account, scan_id],
    )
    if staged != expected:
        raise WarehouseError(
            f"warehouse {tx.name}: {expected - staged} of the {expected} listing rows "
            "this scan staged are gone (another listing scan started meanwhile); "
            "nothing was committed, run the scan again"
        )
    # One row per uuid: the copy from the first (newest) page the scan saw it on.
    tx.create_temp_table(
        "listing_scan",
        """
        SELECT account, uuid, call_time, call_date, direction, caller, callee,
               first_seen_at, last_seen_at
        FROM (
            SELECT account, uuid, call_time, call_date, direction, caller, callee,
                   CAST(? AS TIMESTAMPTZ) AS first_seen_at,
                   CAST(? AS TIMESTAMPTZ) AS last_seen_at,
                   row_number() OVER (PARTITION BY uuid ORDER BY page) AS position
            FROM _cdr_listing_stage WHERE account = ? AND scan_id = ?
        ) AS staged
        WHERE position = 1
        """,
        [seen_at, seen_at, account, scan_id],
    )
    new, updated, unchanged = tx.execute(
        f"""
        SELECT
            count(*) FILTER (WHERE l.uuid IS NULL),
            count(*) FILTER (WHERE l.uuid IS NOT NULL AND {_CHANGED}),
            count(*) FILTER (WHERE l.uuid IS NOT NULL AND NOT {_CHANGED})
        FROM listing_scan AS b
        LEFT JOIN cdr_listing AS l ON l.account = b.account AND l.uuid = b.uuid
        """  # noqa: S608 (constant SQL)
    ).fetchone() or (0, 0, 0)
    if new + updated + unchanged:
        tx.upsert(
            schema.cdr_listing,
            "listing_scan",
            keep=("first_seen_at",),
            set_sql={"last_seen_at": "greatest(t.last_seen_at, {new}.last_seen_at)"},
        )
    newest = tx.scalar("SELECT max(call_time) FROM listing_scan")
    days = [day for (day,) in tx.execute(
        "SELECT DISTINCT call_date FROM listing_scan ORDER BY call_date"
    ).fetchall()]  # fmt: skip
    tx.drop_temp_table("listing_scan")
    tx.execute(
        "DELETE FROM _cdr_listing_stage WHERE account = ? AND scan_id = ?", [account, scan_id]
    )
    mark = _advance_high_water_mark(tx, newest, seen_at, account)
    return ListingLoadResult(
        new=new,
        updated=updated,
        unchanged=unchanged,
        rejected=0,
        high_water_mark=mark,
        days_touched=tuple(days),
    )


def upsert_listing(
    db: Backend, listing: NormalizedListing, *, seen_at: datetime, account: str
) -> ListingLoadResult:
    """Upsert listed calls, advance the high-water mark and write the listing rejects.

    A whole scan of one frame, in one transaction: the same merge as
    :func:`finish_listing_scan`. A uuid twice in the frame keeps its last row.

    Args:
        listing: output of :func:`~bulutfon_pipeline.normalize.normalize_listing`.
        seen_at: when the listing was read (aware).

    Returns:
        Counts and the committed high-water mark.

    Raises:
        WarehouseError: the load failed and was rolled back.
    """
    seen_at = utc(seen_at, "seen_at")
    frame = listing.frame.drop_duplicates("uuid", keep="last").assign(page=1)
    stage = ListingStage(scan_id=uuid4().hex, high_water_mark=None)
    return finish_listing_scan(
        db, stage, frame, rejects=listing.rejects, seen_at=seen_at, account=account
    )


# --- the high-water mark ----------------------------------------------------------------


def read_high_water_mark(tx: Transaction, *, account: str) -> datetime | None:
    """``account``'s mark as committed (or as this transaction moved it)."""
    value = tx.scalar(
        "SELECT value FROM _pipeline_state WHERE account = ? AND key = ?",
        [account, schema.HIGH_WATER_MARK_KEY],
    )
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def _advance_high_water_mark(
    tx: Transaction, newest: datetime | None, now: datetime, account: str
) -> datetime | None:
    current = read_high_water_mark(tx, account=account)
    if newest is None:
        return current
    newest = newest.astimezone(UTC)
    if current is not None and newest <= current:
        return current
    tx.replace_row(
        schema.pipeline_state,
        {
            "account": account,
            "key": schema.HIGH_WATER_MARK_KEY,
            "value": newest.isoformat(),
            "updated_at": now,
        },
    )
    return newest


def high_water_mark(db: Backend, *, account: str) -> datetime | None:
    """The newest ``call_time`` ever listed for ``account`` (aware UTC), or ``None`` before
    its first listing."""
    with db.transaction() as tx:
        return read_high_water_mark(tx, account=account)
