"""SIGKILL at five points of a sync, and a storage failure mid-load: the rerun is exact
(on DuckDB and on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import signal
from collections import Counter
from typing import Any

import pytest

from bulutfon_pipeline.faults import CRASH_ENV, FAIL_ENV
from bulutfon_pipeline_tests.helpers import assert_tables_match, read_table
from bulutfon_pipeline_tests.reliability.conftest import BACKENDS, Workspace, WorkspaceFactory

pytestmark = pytest.mark.reliability

BATCH = 10


def _state(ws: Workspace) -> tuple[int, int, bool]:
    """(listed calls, loaded calls, whether a high-water mark is committed)."""
    if not ws.warehouse_exists():
        return 0, 0, False
    db = ws.warehouse
    marks = read_table(db, "_pipeline_state")
    return len(read_table(db, "cdr_listing")), len(read_table(db, "cdrs")), bool(marks)


def _rerun_gives_exact_tables(ws: Workspace, sim) -> None:
    """Sync again after the crash: the simulator's exact tables, 50 listed calls once
    each, nothing left staged. The simulator's counters restart for the rerun."""
    sim.reset_stats()
    ws.sync()
    assert_tables_match(ws.warehouse, sim.expected_tables())
    listing = [row["uuid"] for row in read_table(ws.warehouse, "cdr_listing")]
    assert len(listing) == len(set(listing)) == 50
    assert read_table(ws.warehouse, "_cdr_listing_stage") == []


POINTS = [
    # mid-listing, after the 2nd of 3 pages: nothing of the scan is committed
    ("listing_page@2", 0, 0, False),
    # the listing transaction is written but not committed: rows AND mark roll back
    ("before_watermark_commit", 0, 0, False),
    # committed together: every listed row and the mark, no details yet
    ("after_watermark_commit", 50, 0, True),
    # between detail batches: the first batch is committed
    ("detail_batch@2", 50, BATCH, True),
    # inside the 2nd batch's write transaction, before COMMIT: it rolls back whole
    ("details_write@2", 50, BATCH, True),
]


def _crash_cases() -> list[Any]:
    """Every point on both backends; on PostgreSQL only the crash inside the detail
    write's transaction, where the backends' writes differ, runs in make test. Its other
    points are `extended` (make test-all: each costs ~22 s): the listing's transactions
    there are covered by the listing-scan tests, and ``detail_batch`` crashes before the
    batch reaches the backend."""
    cases = []
    for backend in BACKENDS:
        for point, listed, loaded, mark in POINTS:
            extended = backend == "postgres" and not point.startswith("details_write")
            cases.append(
                pytest.param(
                    point, listed, loaded, mark, backend,
                    id=f"{point}-{listed}-{loaded}-{mark}-{backend}",
                    marks=[pytest.mark.extended] if extended else [],
                )
            )  # fmt: skip
    return cases


@pytest.mark.parametrize(("point", "listed", "loaded", "mark", "backend"), _crash_cases())
def test_sigkill_then_rerun_gives_exact_tables(
    point: str, listed: int, loaded: int, mark: bool, backend: str, simulator_factory,
    workspace: WorkspaceFactory,
) -> None:  # fmt: skip
    sim = simulator_factory(days=2, calls_per_day=25, seed=3)
    ws = workspace(sim, backend=backend, BULUTFON_PAGE_SIZE="20",
                   BULUTFON_DETAIL_BATCH_SIZE=str(BATCH), BULUTFON_MAX_CONCURRENCY="2")  # fmt: skip
    crashed = ws.run(extra={CRASH_ENV: point})
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    assert _state(ws) == (listed, loaded, mark)
    fetched_before = set(sim.stats()["detail_uuids"])
    _rerun_gives_exact_tables(ws, sim)
    # The rerun fetched exactly the calls the crash left without a committed detail.
    refetched = sim.stats()["detail_uuids"]
    assert sum(refetched.values()) == 50 - loaded
    committed = {row["uuid"] for row in read_table(ws.warehouse, "cdrs")} - set(refetched)
    assert len(committed) == loaded and committed <= fetched_before


def test_sigkill_between_staged_listing_chunks_commits_nothing(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, seed=3)
    # One listing page per staged chunk: each page is committed to the stage on its own.
    ws = workspace(sim, BULUTFON_PAGE_SIZE="20", BULUTFON_LISTING_CHUNK_ROWS="20",
                   BULUTFON_MAX_CONCURRENCY="2")  # fmt: skip
    crashed = ws.run(extra={CRASH_ENV: "listing_page@2"})
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    # Two chunks are staged, yet neither cdr_listing nor the mark moved.
    assert len(read_table(ws.db, "_cdr_listing_stage")) == 40
    assert _state(ws) == (0, 0, False)
    _rerun_gives_exact_tables(ws, sim)
    assert sum(sim.stats()["detail_uuids"].values()) == 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_disk_full_mid_load_fails_cleanly_and_the_rerun_completes(
    backend: str, simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, seed=4)
    ws = workspace(sim, backend=backend, BULUTFON_DETAIL_BATCH_SIZE=str(BATCH),
                   BULUTFON_MAX_CONCURRENCY="2")  # fmt: skip
    # The warehouse write of the 2nd detail batch fails as a full disk would (the error
    # type is the backend's own: duckdb.IOException, psycopg's DiskFull).
    failed = ws.run(extra={FAIL_ENV: "details_write@2"})
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "No space left on device" in failed.stderr
    # The last committed state: the listing with its mark, and exactly the first batch.
    assert _state(ws) == (50, BATCH, True)
    first = {row["uuid"] for row in read_table(ws.warehouse, "cdrs")}
    ws.sync()
    assert_tables_match(ws.warehouse, sim.expected_tables())
    assert first <= {row["uuid"] for row in read_table(ws.warehouse, "cdrs")}


def test_sigkill_between_the_refetch_of_changed_calls_and_its_commit(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    """Two calls change at the source (a recording removed, a price corrected); the sync
    that follows them is killed inside the re-fetch's write transaction. Nothing of the
    re-fetch is committed and both calls stay marked; the next sync fetches exactly those
    two and makes every table, the audit and the recordings exact."""
    sim = simulator_factory(days=2, calls_per_day=25, seed=3, dialect="v1", recording_share=0.5)
    ws = workspace(sim, BULUTFON_DOWNLOAD_RECORDINGS="1", BULUTFON_MAX_CONCURRENCY="2")
    ws.sync()
    newest = sim.dataset.calls[0].call_time
    recent = [c for c in sim.dataset.calls if c.call_time >= newest - dt.timedelta(hours=24)]
    removed = next(c for c in recent if c.call_record == "YES")
    priced = next(c for c in recent if c.call_price is not None and c.uuid != removed.uuid)
    recordings = {r["cdr_uuid"]: r["path"] for r in read_table(ws.db, "call_recordings")}
    path = ws.data / recordings[removed.uuid]
    assert path.is_file()
    sim.change_call(removed.uuid, call_record="REMOVED")
    sim.change_call(priced.uuid, call_price="0.7777")
    cdrs_before = read_table(ws.db, "cdrs")

    crashed = ws.run(extra={CRASH_ENV: "details_write"})
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    assert read_table(ws.db, "cdrs") == cdrs_before
    assert read_table(ws.db, "cdr_changes") == []
    marked = {r["uuid"] for r in read_table(ws.db, "_cdr_refetch")}
    assert marked == {removed.uuid, priced.uuid}
    # The file goes before the COMMIT, so no crash can leave it behind; its row stays
    # until the re-fetch commits.
    assert not path.exists()
    assert removed.uuid in {r["cdr_uuid"] for r in read_table(ws.db, "call_recordings")}

    sim.reset_stats()
    ws.sync()
    assert Counter(sim.stats()["detail_uuids"]) == Counter([removed.uuid, priced.uuid])
    expected = sim.expected_tables()
    expected["load_rejects"] += [
        {"uuid": c.uuid, "stage": "recording"}
        for c in sim.dataset.calls
        if c.call_record == "REMOVED"
    ]
    assert_tables_match(ws.db, expected)
    audit = {
        (r["uuid"], r["field"], r["old_value"], r["new_value"])
        for r in read_table(ws.db, "cdr_changes")
    }
    assert audit == {
        (removed.uuid, "call_record", "YES", "REMOVED"),
        (removed.uuid, "recording_file", recordings[removed.uuid], None),
        (priced.uuid, "call_price", f"{priced.call_price:.4f}", "0.7777"),
    }
    left = {r["cdr_uuid"] for r in read_table(ws.db, "call_recordings")}
    assert left == set(recordings) - {removed.uuid}
    assert read_table(ws.db, "_cdr_refetch") == []
