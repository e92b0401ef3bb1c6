"""A live source and concurrent writers: everything exactly once, no lock tracebacks.
Two syncs at once on PostgreSQL too, where the lock is an advisory lock of the server."""

from __future__ import annotations

import re
import time

import pytest

from bulutfon_pipeline.settings import DEFAULT_ACCOUNT
from bulutfon_pipeline.warehouse.postgres_backend import Postgres
from bulutfon_pipeline.warehouse.postgres_lock import lock_key
from bulutfon_pipeline_tests.helpers import assert_tables_match, read_table
from bulutfon_pipeline_tests.reliability.conftest import Workspace, WorkspaceFactory

pytestmark = pytest.mark.reliability


def test_live_listing_and_late_calls_land_exactly_once(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    # DuckDB only (two sync processes, ~20 s of the suite): test_pipeline.py's in-process
    # twin runs the listing paged while calls arrive on PostgreSQL too.
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


def _advisory_lock_holders(ws: Workspace) -> list[int]:
    """The server pids of the sessions holding the sync's advisory lock (of schema
    ``public`` and the account ``default``) in the workspace's database."""
    assert ws.warehouse_url is not None
    key = lock_key("public", "sync", DEFAULT_ACCOUNT) & 0xFFFFFFFFFFFFFFFF
    with Postgres(ws.warehouse_url).connect() as con:
        rows = con.execute(
            """
            SELECT l.pid FROM pg_locks AS l
            JOIN pg_database AS d ON d.oid = l.database AND d.datname = current_database()
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.classid = %s::oid AND l.objid = %s::oid
            """,
            [key >> 32, key & 0xFFFFFFFF],
        ).fetchall()
    return [row[0] for row in rows]


def test_two_syncs_at_once_on_postgres_the_second_exits_3(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, latency_ms=30, seed=9)
    ws = workspace(sim, backend="postgres", BULUTFON_MAX_CONCURRENCY="2")
    first = ws.start()
    # The first holds the advisory lock before it talks to the API.
    _wait_for(lambda: sim.stats()["total"] > 0 or first.poll() is not None, "the first sync")
    assert first.poll() is None, "the first sync ended before the second started"
    # As in the DuckDB test: the first keeps the lock however slow the second's start is.
    sim.update_config(latency_ms=1000)
    holders = _advisory_lock_holders(ws)
    assert len(holders) == 1, holders
    code, _, stderr = ws.finish(ws.start(extra={"BULUTFON_LOCK_TIMEOUT_S": "1"}))
    sim.update_config(latency_ms=30)
    assert code == 3, stderr
    assert "Traceback" not in stderr
    # One line while it waits, one when it gives up: both name the server session that
    # holds the lock (the first sync's), and neither shows the URL's password (the
    # workspace's secret scan checks every output).
    waiting, gave_up = stderr.strip().splitlines()
    holder = rf"\(pid {holders[0]} bulutfon_pipeline, connected [-\d: ]+Z\)"
    assert re.match(rf"waiting for another sync to finish on .+ {holder}; giving up after 1s$",
                    waiting), waiting  # fmt: skip
    assert re.search(rf"is locked by another sync {holder}; gave up after 1s$", gave_up), gave_up
    assert "***" in waiting  # the URL is shown, its password masked
    code, _, stderr = ws.finish(first)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert_tables_match(ws.warehouse, sim.expected_tables())
    assert set(sim.stats()["detail_uuids"].values()) == {1}
    # The lock went with the first sync's connection.
    assert _advisory_lock_holders(ws) == []
