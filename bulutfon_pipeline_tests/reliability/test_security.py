"""Security properties that are not tied to one scenario (the secret scan runs after every
scenario, in the ``workspace`` fixture's teardown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bulutfon_pipeline.cli import main as cli_main
from bulutfon_pipeline.cli import ui as cli_ui
from bulutfon_pipeline_tests.helpers import read_table
from bulutfon_pipeline_tests.reliability.conftest import Workspace, WorkspaceFactory, find_leaks

pytestmark = pytest.mark.reliability


def test_make_ui_binds_the_webserver_to_loopback_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    ui_recipe = makefile.split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "--host" not in ui_recipe and "bulutfon-pipeline ui" in ui_recipe
    launched: list[list[str]] = []

    class RecordingTree:
        """Records what `ui` would start, and reports dagster dev as exited at once."""

        signum = None

        def __enter__(self) -> RecordingTree:
            return self

        def __exit__(self, *exc: object) -> None: ...

        def spawn(self, name: str, argv: list[str], **kwargs: Any) -> None:
            launched.append(list(argv))

        def wait(self) -> tuple[str, int]:
            return "dagster dev", 0

    monkeypatch.setattr(cli_ui, "ProcessTree", RecordingTree)
    monkeypatch.setenv("BULUTFON_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(cli_main, ["ui"])
    assert result.exit_code == 0, result.output
    dagster = next(args for args in launched if "dev" in args)
    assert dagster[dagster.index("-h") + 1] == "127.0.0.1"
    assert "0.0.0.0" not in " ".join(" ".join(a) for a in launched)


def test_the_secret_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    # The scan itself must work, or every scenario's "no leaks" would pass vacuously.
    ws = Workspace(root=tmp_path, sim=None, env={}, secrets=["planted-secret-0123456789"])
    (tmp_path / "dagster_home" / "logs").mkdir(parents=True)
    (tmp_path / "dagster_home" / "logs" / "run.log").write_text("token=planted-secret-0123456789")
    ws.outputs.append("stderr: planted-secret-0123456789")
    leaks = find_leaks(ws)
    assert any("run.log" in leak for leak in leaks) and "process output #0" in leaks


def test_the_secret_scan_reads_postgres_text_and_json_columns(
    tmp_path: Path, postgres_url: str
) -> None:
    # The scan of a PostgreSQL warehouse asks the server, in every schema: a secret in a
    # json column of one schema and in a text column of another are both found.
    import psycopg

    secret = "planted-secret-9876543210"
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as con:
        con.execute("CREATE TABLE payloads (id int, body json)")
        con.execute("INSERT INTO payloads VALUES (1, %s), (2, '{}')", [f'{{"t": "{secret}"}}'])
        con.execute("CREATE SCHEMA calls")
        con.execute("CREATE TABLE calls.notes (id int, note text, tag varchar(40))")
        con.execute("INSERT INTO calls.notes VALUES (1, 'clean', %s)", [f"x{secret}x"])
    ws = Workspace(root=tmp_path, sim=None, env={}, secrets=[secret], warehouse_url=postgres_url)
    assert find_leaks(ws) == ["warehouse calls.notes.tag", "warehouse public.payloads.body"]


def test_a_postgres_workspace_with_a_password_in_its_url_leaks_it_nowhere(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    # OAuth (client secret, rotating refresh tokens) and a password in the warehouse URL;
    # the workspace's scan at teardown looks for all of them in every output, every file
    # (DAGSTER_HOME, the data folder), the server's log and every text column.
    sim = simulator_factory(days=1, calls_per_day=10, seed=2)
    ws = workspace(sim, auth="oauth", backend="postgres")
    assert ws.warehouse_url is not None and ws.secrets[0] in ws.warehouse_url
    ws.sync()
    ws.run(["sql", "SELECT count(*) AS calls FROM cdrs", "--format", "csv"])
    assert ws.outputs[-2].splitlines() == ["calls", "10"]
    assert find_leaks(ws) == []
    # The warehouse really is PostgreSQL: no DuckDB file was made.
    assert not ws.db.exists()


def test_a_v2_api_key_sent_in_every_url_leaks_nowhere(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    # The key's worst placement (BULUTFON_V2_AUTH=query: in every URL), server errors that
    # make the client retry and log, recordings fetched from call_record's URL. The scan
    # looks for the key (an issued secret) in every output, file and text column (an
    # error's text is checked in-process: api/test_v2.py).
    sim = simulator_factory(days=1, calls_per_day=12, seed=6, dialect="v2",
                            recording_share=0.5, error_rate=0.2, fault_seed=4)  # fmt: skip
    ws = workspace(sim, BULUTFON_V2_AUTH="query", BULUTFON_DOWNLOAD_RECORDINGS="1")
    assert ws.env["BULUTFON_API_KEY"] == sim.api_key in sim.issued_secrets()
    ws.sync()
    loaded = read_table(ws.db, "cdrs", ["uuid", "call_record"])
    assert sorted(row["uuid"] for row in loaded) == sorted(sim.dataset.uuids)
    assert any(row["call_record"].startswith(sim.url) for row in loaded)
    stats = sim.stats()
    errors = [stats[e].get(s, 0) for e in ("listing", "detail") for s in ("500", "502", "503")]
    assert sum(errors) > 0  # the client did retry (and log) server errors
    assert find_leaks(ws) == []
