"""Fixtures of the reliability suite: `bulutfon-pipeline sync` as a subprocess in a private
workspace, and a secret scan of everything the scenario left behind, run at teardown.

A workspace's warehouse is a DuckDB file (the default) or, with ``backend="postgres"``, a
fresh database on the session's PostgreSQL server, reached through a URL that carries a
password (trust authentication ignores it), so the scan proves that it shows up nowhere."""

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
from uuid import uuid4

import duckdb
import pytest

from bulutfon_pipeline.settings import TOKEN_FILE_NAME
from bulutfon_pipeline.simulator import SimulatorServer
from bulutfon_pipeline.warehouse.postgres_backend import Postgres
from bulutfon_pipeline_tests.helpers import BACKENDS, Database
from bulutfon_pipeline_tests.postgres import PostgresServer

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
    #: The PostgreSQL warehouse's URL (with its password), or None for the DuckDB file.
    warehouse_url: str | None = None
    #: The PostgreSQL server's log, scanned for secrets too.
    server_log: Path | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def db(self) -> Path:
        """The DuckDB file (``BULUTFON_DUCKDB_PATH``); unused on PostgreSQL."""
        return self.data / "warehouse.duckdb"

    @property
    def is_postgres(self) -> bool:
        return self.warehouse_url is not None

    @property
    def warehouse(self) -> Database:
        """What the helpers read (``read_table``...): the DuckDB file or the PostgreSQL URL."""
        return self.warehouse_url if self.warehouse_url is not None else self.db

    def warehouse_exists(self) -> bool:
        """Whether a sync has created the warehouse's tables yet."""
        if self.warehouse_url is None:
            return self.db.exists()
        with Postgres(self.warehouse_url).connect() as con:
            row = con.execute("SELECT to_regclass('public.cdrs') IS NOT NULL").fetchone()
        return bool(row and row[0])

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


def _duckdb_leaks(db: Path, pattern: str) -> list[str]:
    leaks = []
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table, column in _text_columns(con):
            found = con.execute(
                f"SELECT count(*) FROM {table} WHERE regexp_matches(CAST({column} AS VARCHAR), ?)",
                [pattern],
            ).fetchone()
            if found and found[0]:
                leaks.append(f"warehouse {table}.{column}")
    finally:
        con.close()
    return leaks


def _postgres_leaks(url: str, pattern: str) -> list[str]:
    """Every text-like column (text, varchar, char, json, jsonb) of every table and view
    in the database's own schemas (the warehouse's, whichever it is)."""
    leaks = []
    with Postgres(url).connect() as con:
        columns = con.execute(
            """
            SELECT c.table_schema, c.table_name, c.column_name
            FROM information_schema.columns AS c
            WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')
              AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
            ORDER BY 1, 2, 3
            """
        ).fetchall()
        for schema, table, column in columns:
            found = con.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}"::text ~ %s',
                [pattern],
            ).fetchone()
            if found and found[0]:
                leaks.append(f"warehouse {schema}.{table}.{column}")
    return leaks


def find_leaks(ws: Workspace) -> list[str]:
    """Where any secret appears: outputs, files under the workspace (DAGSTER_HOME, the data
    folder, the DuckDB file byte for byte) and every text column of the warehouse. The
    token file is the one allowed place, and it must be mode 0600."""
    secrets = all_secrets(ws)
    leaks: list[str] = []
    for index, text in enumerate(ws.outputs):
        leaks += [f"process output #{index}" for s in secrets if s in text]
    files = sorted(ws.root.rglob("*"))
    if ws.server_log is not None:
        files.append(ws.server_log)
    for path in files:
        if not path.is_file():
            continue
        if path == ws.token_file:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != 0o600:
                leaks.append(f"{path} has mode {mode:o}, not 600")
            continue
        content = path.read_bytes()
        leaks += [str(path) for s in secrets if s.encode() in content]
    if not secrets:
        return leaks
    # The secrets are hex (and test-chosen words), regex-escaped anyway.
    pattern = "|".join(re.escape(s) for s in secrets)
    if ws.warehouse_url is not None:
        # The server's files are its own; ask it for every text column instead.
        leaks += _postgres_leaks(ws.warehouse_url, pattern)
    elif ws.db.exists():
        # The file is compressed, so also ask DuckDB itself.
        leaks += _duckdb_leaks(ws.db, pattern)
    return leaks


WorkspaceFactory = Callable[..., Workspace]


def url_with_password(server: PostgresServer, database: str, password: str) -> str:
    """The server's URL of ``database`` with ``password`` in it (trust auth ignores it)."""
    url = server.url(database)
    assert url.startswith("postgresql+psycopg://postgres@"), url
    return url.replace("postgres@", f"postgres:{password}@", 1)


@pytest.fixture
def workspace(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WorkspaceFactory]:
    """``make(sim, auth="master", backend="duckdb", **env)`` -> a :class:`Workspace`; at
    teardown every workspace is scanned for secrets (a leak fails the test).

    ``backend="postgres"``: the warehouse is a fresh database on the session's server
    (``BULUTFON_WAREHOUSE_URL``, with a password that is one of the scanned secrets),
    dropped at teardown."""
    made: list[Workspace] = []
    databases: list[tuple[PostgresServer, str]] = []

    def make(
        sim: SimulatorServer | None, auth: str = "master", backend: str = "duckdb", **extra: Any
    ) -> Workspace:
        assert backend in BACKENDS, backend
        root = tmp_path / f"ws{len(made)}"
        ws = Workspace(root=root, sim=sim, env={})
        ws.data.mkdir(parents=True)
        ws.home.mkdir()
        (ws.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        server_env: dict[str, str] = {}
        if backend == "postgres":
            # Only now: a DuckDB-only run never starts the server.
            server: PostgresServer = request.getfixturevalue("postgres_server")
            database = server.create_database()
            databases.append((server, database))
            password = f"pg-pw-{uuid4().hex}"
            ws.secrets.append(password)
            ws.warehouse_url = url_with_password(server, database, password)
            ws.server_log = server.root / "server.log"
            server_env = {"BULUTFON_WAREHOUSE_URL": ws.warehouse_url}
        ws.env = {
            **(sim.env(auth=auth) if sim is not None else {}),  # type: ignore[arg-type]
            "BULUTFON_DUCKDB_PATH": str(ws.db),
            "BULUTFON_DATA_DIR": str(ws.data),
            "DAGSTER_HOME": str(ws.home),
            "BULUTFON_START_DATE": "2015-01-01",
            **server_env,
            **{k: str(v) for k, v in extra.items()},
        }
        made.append(ws)
        return ws

    yield make
    try:
        for ws in made:
            leaks = find_leaks(ws)
            assert not leaks, f"secrets leaked: {leaks}"
    finally:
        for server, database in databases:
            server.drop_database(database)
