"""Transient API faults and token expiry: the tables still come out exact.

DuckDB only: the faults and the tokens are the API client's, and what reaches the
warehouse is the same as in any sync; a scenario costs ~20 s of the suite (two sync
processes), so PostgreSQL's share of it goes to the scenarios where the warehouse is
hit mid-write (test_crashes.py, test_interrupts.py). Both pass with ``backend="postgres"``.
"""

from __future__ import annotations

import json

import pytest

from bulutfon_pipeline_tests.helpers import assert_tables_match
from bulutfon_pipeline_tests.reliability.conftest import WorkspaceFactory

pytestmark = pytest.mark.reliability


def test_transient_faults_give_exact_tables(simulator_factory, workspace: WorkspaceFactory):
    # 20% 429 (half with Retry-After), 5% 5xx (a third HTML), 2% cut JSON bodies,
    # latency with jitter: every one is retried, nothing is lost or loaded twice. The
    # faults fall on requests in their order of arrival, which the fan-out's concurrency
    # varies: 120 calls make "no detail drew a 5xx" unlikely (0.95^120, under 0.3 %);
    # 50 left it at about 8 % (it happened once, in CI).
    sim = simulator_factory(
        days=2, calls_per_day=60, random_429_rate=0.2, random_429_retry_after_share=0.5,
        error_rate=0.05, html_error_share=0.3, truncate_rate=0.02, latency_ms=5, jitter_ms=10,
        fault_seed=7,
    )  # fmt: skip
    ws = workspace(sim, BULUTFON_PAGE_SIZE="20", BULUTFON_RETRY_AFTER_CAP_S="1")
    ws.sync()
    stats = sim.stats()
    # The faults really happened.
    assert stats["detail"].get("429", 0) > 5 and stats["listing"].get("429", 0) > 0
    assert sum(stats["detail"].get(code, 0) for code in ("500", "502", "503")) > 0
    assert_tables_match(ws.db, sim.expected_tables())


def test_tokens_expiring_and_rotating_mid_run(simulator_factory, workspace: WorkspaceFactory):
    # OAuth with access tokens that live 2 s and refresh tokens that rotate on every use,
    # in a run that lasts several lifetimes (latency makes it slow enough).
    sim = simulator_factory(days=3, calls_per_day=20, token_ttl_s=2, latency_ms=80, seed=5)
    ws = workspace(sim, auth="oauth", BULUTFON_MAX_CONCURRENCY="2")
    ws.sync()
    stats = sim.stats()
    refreshes = stats["token"].get("200", 0)
    # Several lifetimes, yet a refresh per token lifetime, not one per request.
    assert 3 <= refreshes <= stats["detail"].get("200", 0) // 3, stats
    assert_tables_match(ws.db, sim.expected_tables())
    stored = json.loads(ws.token_file.read_text())
    assert stored["refresh_token"] != sim.initial_refresh_token

    # The environment still holds the original refresh token, long rotated away: the
    # token file must win, or this second run could not authenticate at all.
    sim.expire_tokens()
    late = sim.add_calls(3, where="head")
    sim.reset_stats()
    ws.sync()
    assert sim.stats()["token"].get("400", 0) == 0
    assert_tables_match(ws.db, sim.expected_tables())
    assert set(late) <= set(sim.stats()["detail_uuids"])
