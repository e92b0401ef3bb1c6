"""Flow control over the wire: each behaviour of issue 12 against the real simulator.

The listing is scanned on a well-behaved API, then the behaviour is switched on and the
details are loaded through ``load_details`` (the pipeline's own fan-out and loader).
Every test asserts the exact tables against the simulator's ground truth, no failed
call, and request counts that agree on both sides: one detail 200 per call (nothing
fetched twice), every 429 seen by the client. Speed is not asserted here: the figures
are in ``benchmarks/flow.py``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulutfon_pipeline.api import BulutfonClient, ClientConfig
from bulutfon_pipeline.loads import load_details, scan_listing
from bulutfon_pipeline.simulator import SimulatorServer
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.helpers import assert_tables_match

START = dt.date(2015, 1, 1)


def load(
    sim: SimulatorServer,
    tmp_path: Path,
    knobs: dict[str, Any],
    *,
    during: Callable[[int], None] | None = None,
    **config: Any,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Scan the listing cleanly, set ``knobs``, load every detail; returns the client's
    counters and the server's stats of the detail phase. ``during(n)`` runs after the
    n-th fetched detail."""
    values: dict[str, Any] = {"data_dir": tmp_path, "backoff_base_s": 0.01}
    values.update(config)
    client_config = ClientConfig.from_env(sim.env("master"), **values)  # type: ignore[arg-type]
    warehouse = Warehouse(tmp_path / "flow.duckdb", lock_timeout_s=10.0)
    warehouse.ensure_schema()
    with BulutfonClient(client_config) as client:
        scan_listing(client, warehouse, lookback=dt.timedelta(hours=48), start_date=START)
        sim.update_config(**knobs)
        sim.reset_stats()
        fetched = _Counting(client, during)
        config_days = sim.dataset.config
        first = config_days.end_date - dt.timedelta(days=config_days.days)
        summary = load_details(fetched, warehouse, start=first, end=config_days.end_date)
        stats = client.stats.as_dict()
    assert summary.pending == len(sim.dataset.uuids)
    assert_tables_match(tmp_path / "flow.duckdb", sim.expected_tables())
    return stats, sim.stats()


class _Counting:
    """The client's ``fetch_details``, calling ``during(n)`` after the n-th result."""

    def __init__(self, client: BulutfonClient, during: Callable[[int], None] | None) -> None:
        self.client, self.during = client, during

    def fetch_details(self, uuids: Any) -> Any:
        for n, result in enumerate(self.client.fetch_details(uuids), start=1):
            yield result
            if self.during is not None:
                self.during(n)


def assert_each_call_once(sim: SimulatorServer, stats: dict[str, int], server: dict[str, Any]):
    uuids = sim.dataset.uuids
    detail = server["detail"]
    assert detail["200"] == len(uuids)  # one success per call: nothing fetched twice
    assert sorted(server["detail_uuids"]) == sorted(uuids)
    assert detail.get("429", 0) == stats.get("rate_limited", 0)
    assert stats.get("errors", 0) == 0


def test_1_clean_api_with_20_to_30_ms_latency(simulator_factory: Any, tmp_path: Path) -> None:
    sim = simulator_factory(days=2, calls_per_day=100)
    stats, server = load(sim, tmp_path, {"latency_ms": 20, "jitter_ms": 10})
    assert_each_call_once(sim, stats, server)
    assert server["detail"] == {"200": 200}
    assert set(server["detail_uuids"].values()) == {1}


@pytest.mark.parametrize("retry_after", [False, True])
def test_2_fixed_limit_with_and_without_retry_after(
    simulator_factory: Any, tmp_path: Path, retry_after: bool
) -> None:
    sim = simulator_factory(days=2, calls_per_day=150)
    knobs = {"rate_limit_rps": 100, "rate_limit_retry_after": retry_after}
    stats, server = load(sim, tmp_path, knobs)
    assert_each_call_once(sim, stats, server)
    assert set(server["detail"]) <= {"200", "429"}


@pytest.mark.parametrize("retry_after", [True, False])
@pytest.mark.parametrize("share", [0.05, 0.2])
def test_3_random_429s_with_and_without_retry_after(
    simulator_factory: Any, tmp_path: Path, share: float, retry_after: bool
) -> None:
    sim = simulator_factory(days=2, calls_per_day=60, fault_seed=3)
    knobs = {"random_429_rate": share, "random_429_retry_after_share": float(retry_after)}
    stats, server = load(sim, tmp_path, knobs)
    assert_each_call_once(sim, stats, server)
    assert server["detail"]["429"] > 0  # the behaviour was really on
    assert stats["retries"] == server["detail"]["429"]  # each 429 retried once, nothing else


@pytest.mark.slow
def test_4_limit_shared_with_another_client_on_the_same_token(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=100)
    other: list[int] = []
    stop = threading.Event()

    def poll() -> None:  # another integration on the same token, ~40 req/s, no backoff
        url = sim.url + sim.paths[1].format(uuid=sim.dataset.uuids[0])
        with httpx.Client(headers={"User-Agent": "other"}) as http:
            while not stop.wait(0.025):  # its own polling interval, not a synchronisation
                other.append(http.get(url, params={"access_token": sim.master_token}).status_code)

    thread = threading.Thread(target=poll)

    def during(n: int) -> None:
        if n == 20:
            thread.start()
        elif n == 120:
            stop.set()
            thread.join()

    stats, server = load(sim, tmp_path, {"rate_limit_rps": 60}, during=during)
    assert len(other) > 0
    detail = server["detail"]
    assert detail["200"] == 200 + other.count(200)
    assert detail.get("429", 0) == stats.get("rate_limited", 0) + other.count(429)
    assert stats.get("errors", 0) == 0


def test_5_limit_that_changes_mid_run(simulator_factory: Any, tmp_path: Path) -> None:
    sim = simulator_factory(days=2, calls_per_day=150)

    def during(n: int) -> None:
        if n == 100:
            sim.update_config(rate_limit_rps=50)
        elif n == 175:
            sim.update_config(rate_limit_rps=200)

    stats, server = load(sim, tmp_path, {"rate_limit_rps": 200}, during=during)
    assert_each_call_once(sim, stats, server)


def test_6_a_burst_of_503s_fails_nothing(simulator_factory: Any, tmp_path: Path) -> None:
    sim = simulator_factory(days=2, calls_per_day=100)
    # 60 answers in a row are 503: more than max_retries for any one request in flight
    stats, server = load(sim, tmp_path, {"outage_requests": 60}, max_retries=8)
    assert_each_call_once(sim, stats, server)
    assert server["detail"] == {"200": 200, "503": 60}
    assert stats["retries"] == 60


@pytest.mark.slow
def test_7_slow_api_300_ms_plus_minus_200(simulator_factory: Any, tmp_path: Path) -> None:
    sim = simulator_factory(days=1, calls_per_day=96)
    stats, server = load(sim, tmp_path, {"latency_ms": 100, "jitter_ms": 400})
    assert_each_call_once(sim, stats, server)
    assert server["detail"] == {"200": 96}
