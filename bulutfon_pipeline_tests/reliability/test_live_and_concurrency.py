"""A live source and concurrent writers: everything exactly once, no lock tracebacks."""

from __future__ import annotations

import time

import pytest

from bulutfon_pipeline_tests.helpers import assert_tables_match, read_table
from bulutfon_pipeline_tests.reliability.conftest import WorkspaceFactory

pytestmark = pytest.mark.reliability


def test_live_listing_and_late_calls_land_exactly_once(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    # 3 calls end while each further page is read, shifting items across page boundaries.
    sim = simulator_factory(days=2, calls_per_day=30, live_calls_per_page=3, seed=8)
    ws = workspace(sim, BULUTFON_PAGE_SIZE="10")
    ws.sync()
    sim.update_config(live_calls_per_page=0)
    late = sim.add_calls(4, where="late", hours_ago=30)  # pages back, inside the 48 h lookback
    head = sim.add_calls(2, where="head")
    ws.sync()
    assert_tables_match(ws.db, sim.expected_tables())
    listed = [row["uuid"] for row in read_table(ws.db, "cdr_listing")]
    assert len(listed) == len(set(listed))
    assert set(late) | set(head) <= set(listed)
    # Across both runs every call's detail was fetched exactly once.
    per_call = sim.stats()["detail_uuids"]
    assert set(per_call.values()) == {1}
    assert set(per_call) == {row["uuid"] for row in sim.expected_tables()["cdrs"]}


def _wait_for(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_syncs_at_once_one_waits_its_turn_out(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, latency_ms=30, seed=9)
    ws = workspace(sim, BULUTFON_MAX_CONCURRENCY="2")
    first = ws.start()
    # The first holds the warehouse once it talks to the API.
    _wait_for(lambda: sim.stats()["total"] > 0 or first.poll() is not None, "the first sync")
    assert first.poll() is None, "the first sync ended before the second started"
    # Slow the API right down while the second starts, so the first still holds the
    # warehouse however long the second's imports take on a busy machine (the suite runs
    # on parallel workers): its 25 rounds of two detail requests now take 25 s.
    sim.update_config(latency_ms=1000)
    # The second waits for the lock up to BULUTFON_LOCK_TIMEOUT_S (here 1 s), saying so.
    code, _, stderr = ws.finish(ws.start(extra={"BULUTFON_LOCK_TIMEOUT_S": "1"}))
    sim.update_config(latency_ms=30)
    assert code == 3, stderr
    waiting, gave_up = stderr.strip().splitlines()
    assert waiting.startswith(f"waiting for another sync (pid {first.pid})")
    assert f"another sync (pid {first.pid}) is loading" in gave_up
    assert "Traceback" not in stderr
    code, _, stderr = ws.finish(first)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert_tables_match(ws.db, sim.expected_tables())
    assert set(sim.stats()["detail_uuids"].values()) == {1}
