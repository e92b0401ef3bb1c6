"""The demo: the simulator on a free port, a sync into a fresh file, and the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bulutfon_pipeline import progress
from bulutfon_pipeline.runner.preflight import temporary_environment
from bulutfon_pipeline.runner.sync import SyncResult, run_report, run_sync
from bulutfon_pipeline.settings import analytics_path_for


@dataclass
class DemoResult:
    """What ``run_demo`` did, for the CLI to print."""

    sync: SyncResult
    database: Path
    #: the analysts' read-only copy, where the demo's queries go
    analytics: Path
    recordings_dir: Path
    report_path: Path | None
    detail_requests: int
    seconds: float


def run_demo(
    *,
    days: int,
    calls_per_day: int,
    database: Path,
    reporter: progress.PartsReporter | None = None,
    announce: Callable[[str], None] = lambda _message: None,
) -> DemoResult:
    """Start the simulator, sync into ``database`` (a fresh file) and build the report.

    The pipeline is pointed at the simulator through the same environment variables a
    real deployment uses, for the duration of the call.

    Args:
        days: days of simulated calls.
        calls_per_day: calls per simulated day.
        database: the DuckDB file to (re)create.
        reporter: where progress goes.
        announce: receives one line describing the simulator once it is up.
    """
    from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer

    database.parent.mkdir(parents=True, exist_ok=True)
    analytics = analytics_path_for(database)
    for stale in (database, database.with_name(database.name + ".wal"), analytics):
        stale.unlink(missing_ok=True)
    demo_data = database.parent / "demo"
    demo_data.mkdir(exist_ok=True)
    started = time.monotonic()
    config = SimulatorConfig(days=days, calls_per_day=calls_per_day)
    with SimulatorServer(config) as sim:
        announce(
            f"Simulator: {days} days x {calls_per_day} calls/day ending {config.end_date} "
            f"({config.dialect} dialect) on {sim.url}"
        )
        env = {
            **sim.env(auth="master"),
            "BULUTFON_DUCKDB_PATH": str(database),
            "BULUTFON_ANALYTICS_PATH": str(analytics),
            "BULUTFON_DATA_DIR": str(demo_data),
            # The simulator's recordings are synthetic tones, not personal data.
            "BULUTFON_DOWNLOAD_RECORDINGS": "1",
        }
        with temporary_environment(env):
            sync = run_sync(reporter=reporter)
            report_path = run_report()
        stats = sim.stats()
    detail_requests = sum(stats.get("detail", {}).values()) if isinstance(stats, dict) else 0
    return DemoResult(
        sync=sync,
        database=database,
        analytics=analytics,
        recordings_dir=demo_data / "recordings",
        report_path=report_path,
        detail_requests=detail_requests,
        seconds=time.monotonic() - started,
    )
