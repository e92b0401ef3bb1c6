"""Fixtures of the reliability suite: `bulutfon-pipeline sync` as a subprocess in a private
workspace, and a secret scan of everything the scenario left behind, run at teardown."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bulutfon_pipeline.settings import TOKEN_FILE_NAME
from bulutfon_pipeline.simulator import SimulatorServer

SYNC = [sys.executable, "-m", "bulutfon_pipeline.cli", "sync", "--no-progress"]
#: Generous: a sync here takes seconds, a hung one must not hang the suite.
CLI_TIMEOUT_S = 240


@dataclass
class Workspace:
    """One scenario's folders, environment and everything its processes printed."""

    root: Path
    sim: SimulatorServer | None
    env: dict[str, str]
    #: Secrets the test itself configured (beyond the ones the simulator issued).
    secrets: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def db(self) -> Path:
        return self.data / "warehouse.duckdb"

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def token_file(self) -> Path:
        return self.data / TOKEN_FILE_NAME

    def full_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BULUTFON_", "DAGSTER"))}
        return {**base, **self.env, **(extra or {})}

    def run(
        self, args: Sequence[str] = (), extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI (default: ``sync --no-progress``) to completion, capturing output."""
        command = [*SYNC] if not args else [sys.executable, "-m", "bulutfon_pipeline.cli", *args]
        result = subprocess.run(
            command,
            env=self.full_env(extra),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        self.outputs.extend([result.stdout, result.stderr])
        return result

    def sync(self, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A sync that must succeed."""
        result = self.run(extra=extra)
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    def start(
        self, args: Sequence[str] = (), extra: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start the CLI in the background; collect its output with :meth:`finish`."""
        command = [*SYNC] if not args else [sys.executable, "-m", "bulutfon_pipeline.cli", *args]
        return subprocess.Popen(
            command,
            env=self.full_env(extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, proc: subprocess.Popen[str]) -> tuple[int, str, str]:
        stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
        self.outputs.extend([stdout, stderr])
        return proc.returncode, stdout, stderr


def all_secrets(ws: Workspace) -> list[str]:
    issued = ws.sim.issued_secrets() if ws.sim is not None else []
    return sorted({s for s in [*issued, *ws.secrets] if s})


def _text_columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute(
        """
        SELECT table_name, column_name FROM information_schema.columns
        WHERE data_type IN ('VARCHAR', 'JSON') AND table_schema = 'main'
        """
    ).fetchall()


def find_leaks(ws: Workspace) -> list[str]:
    """Where any secret appears: outputs, files under the workspace (DAGSTER_HOME, the data
    folder, the DuckDB file byte for byte) and every text column of the warehouse. The
    token file is the one allowed place, and it must be mode 0600."""
    secrets = all_secrets(ws)
    leaks: list[str] = []
    for index, text in enumerate(ws.outputs):
        leaks += [f"process output #{index}" for s in secrets if s in text]
    for path in sorted(ws.root.rglob("*")):
        if not path.is_file():
            continue
        if path == ws.token_file:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != 0o600:
                leaks.append(f"{path} has mode {mode:o}, not 600")
            continue
        content = path.read_bytes()
        leaks += [str(path) for s in secrets if s.encode() in content]
    if ws.db.exists() and secrets:
        # The file is compressed, so also ask DuckDB itself. The secrets are hex (and
        # test-chosen words), regex-escaped anyway.
        pattern = "|".join(re.escape(s) for s in secrets)
        con = duckdb.connect(str(ws.db), read_only=True)
        try:
            for table, column in _text_columns(con):
                found = con.execute(
                    f"SELECT count(*) FROM {table} "
                    f"WHERE regexp_matches(CAST({column} AS VARCHAR), ?)",
                    [pattern],
                ).fetchone()
                if found and found[0]:
                    leaks.append(f"warehouse {table}.{column}")
        finally:
            con.close()
    return leaks


WorkspaceFactory = Callable[..., Workspace]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[WorkspaceFactory]:
    """``make(sim, auth="master", **env)`` -> a :class:`Workspace`; at teardown every
    workspace is scanned for secrets (a leak fails the test)."""
    made: list[Workspace] = []

    def make(sim: SimulatorServer | None, auth: str = "master", **extra: Any) -> Workspace:
        root = tmp_path / f"ws{len(made)}"
        ws = Workspace(root=root, sim=sim, env={})
        ws.data.mkdir(parents=True)
        ws.home.mkdir()
        (ws.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        ws.env = {
            **(sim.env(auth=auth) if sim is not None else {}),  # type: ignore[arg-type]
            "BULUTFON_DUCKDB_PATH": str(ws.db),
            "BULUTFON_DATA_DIR": str(ws.data),
            "DAGSTER_HOME": str(ws.home),
            "BULUTFON_START_DATE": "2015-01-01",
            **{k: str(v) for k, v in extra.items()},
        }
        made.append(ws)
        return ws

    yield make
    for ws in made:
        leaks = find_leaks(ws)
        assert not leaks, f"secrets leaked: {leaks}"
