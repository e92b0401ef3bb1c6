"""`bulutfon-pipeline ui`: the simulator and `dagster dev` pointed at it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from bulutfon_pipeline.cli.output import console
from bulutfon_pipeline.settings import Settings

DAGSTER_YAML = """\
# Written by `bulutfon-pipeline ui`. DuckDB allows one writer process: the pool serializes
# the steps that write, and the run queue keeps backfills from flooding the machine.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 3
telemetry:
  enabled: false
"""


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_ui(
    *, settings: Settings, host: str, port: int, simulator_port: int, database: Path
) -> None:
    """Start the simulator and `dagster dev` (with a DAGSTER_HOME under the data folder);
    return when `dagster dev` ends, stopping the simulator."""
    data = settings.data_dir.resolve()
    home = Path(os.environ.get("DAGSTER_HOME") or data / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BULUTFON_SIMULATOR_MASTER_TOKEN": token,
        "BULUTFON_ACCESS_TOKEN": token,
        "BULUTFON_API_URL": f"http://127.0.0.1:{simulator_port}",
        "BULUTFON_TOKEN_URL": f"http://127.0.0.1:{simulator_port}/oauth/token",
        "BULUTFON_DUCKDB_PATH": str(database.resolve()),
        "BULUTFON_DATA_DIR": str(data),
    }
    python = sys.executable
    sim = subprocess.Popen(
        [python, "-m", "bulutfon_pipeline.simulator", "--port", str(simulator_port)], env=env
    )
    dagster_bin = shutil.which("dagster", path=str(Path(python).parent)) or "dagster"
    console.print(
        f"Simulator on http://127.0.0.1:{simulator_port}; Dagster UI on http://{host}:{port} "
        f"(DAGSTER_HOME={home}). Ctrl-C stops both."
    )
    try:
        subprocess.run(
            [dagster_bin, "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)],
            env=env,
            check=False,
            # A shell starts background jobs with SIGINT ignored, and `dagster dev` keeps
            # that disposition for SIGTERM too; restore the defaults so it can be stopped.
            preexec_fn=_default_signals,
        )
    except KeyboardInterrupt:
        pass
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
