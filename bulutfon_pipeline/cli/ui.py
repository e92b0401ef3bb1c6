"""`bulutfon-pipeline ui`: the simulator and `dagster dev` pointed at it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
from pathlib import Path

from bulutfon_pipeline.cli.errors import RunFailedError
from bulutfon_pipeline.cli.output import console, err_console
from bulutfon_pipeline.cli.supervise import ProcessTree
from bulutfon_pipeline.settings import Settings

DAGSTER_YAML = """\
# Written by `bulutfon-pipeline ui`. DuckDB allows one writer process: the pool serializes
# the steps that write, and the run queue keeps backfills from flooding the machine; one
# run per PBX account at a time (runs carry bulutfon/account; single-partition runs of the
# account x day partitions, Dagster's dagster/partition/account).
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 3
    tag_concurrency_limits:
      - key: bulutfon/account
        value: {applyLimitPerUniqueValue: true}
        limit: 1
      - key: dagster/partition/account
        value: {applyLimitPerUniqueValue: true}
        limit: 1
telemetry:
  enabled: false
"""


def run_ui(
    *, settings: Settings, host: str, port: int, simulator_port: int, database: Path
) -> None:
    """Start the simulator and `dagster dev` (with a DAGSTER_HOME under the data folder)
    and supervise them: a signal to `ui` stops both trees (exit 130/143), and when one
    child ends the other is stopped (exit 1 if it failed)."""
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
    dagster_bin = shutil.which("dagster", path=str(Path(python).parent)) or "dagster"
    console.print(
        f"Simulator on http://127.0.0.1:{simulator_port}; Dagster UI on http://{host}:{port} "
        f"(DAGSTER_HOME={home}). Ctrl-C (or SIGTERM) stops both."
    )
    # Both children, and everything `dagster dev` starts, stop when `ui` does.
    with ProcessTree() as tree:
        simulator = [python, "-m", "bulutfon_pipeline.simulator", "--port", str(simulator_port)]
        tree.spawn("the simulator", simulator, env=env)
        dev = [dagster_bin, "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)]
        tree.spawn("dagster dev", dev, env=env)
        ended = tree.wait()
        if ended is None:
            err_console.print("stopping the simulator and dagster dev")
    if ended is None:
        sys.exit(128 + (tree.signum or signal.SIGINT))
    name, status = ended
    if status != 0:
        raise RunFailedError(f"{name} exited with status {status}; stopped the rest")
