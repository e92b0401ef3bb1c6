"""Several PBX accounts at run time (issue 14): each with its own client, token, token
file, recordings folder and partitions; a bad account fails alone.

The loads run in-process (``runner.run_sync``) against one simulator serving several
accounts, each with its own master token: the simulator counts every request under the
account whose token it carries, so an account whose requests were all its own shows
exactly its own calls in its stats.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import stat
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from bulutfon_pipeline.accounts import find_account, select_accounts
from bulutfon_pipeline.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    account_day_key,
    bulutfon_accounts_sensor,
    range_tags,
    register_accounts,
    split_key,
)
from bulutfon_pipeline.resources import BulutfonResource
from bulutfon_pipeline.runner import SetupError, run_sync
from bulutfon_pipeline_tests.helpers import (
    accounts_of,
    assert_tables_match,
    environment,
    read_table,
)

ACCOUNTS_TOML = """
[accounts.izmir]
access_token_env = "TOKEN_IZMIR"

[accounts.ankara]
access_token_env = "TOKEN_ANKARA"
"""

BROKEN_TOML = """
[accounts.broken]
access_token_env = "TOKEN_BROKEN"
"""


def _env(sim, tmp_path: Path, toml: str) -> dict[str, str]:
    """Two accounts of ``sim`` (izmir, ankara) in an accounts file, plus ``toml``."""
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(ACCOUNTS_TOML + toml)
    shared = {k: v for k, v in sim.env().items() if k != "BULUTFON_ACCESS_TOKEN"}
    return {
        **shared,
        "BULUTFON_ACCESS_TOKEN": "",
        "BULUTFON_ACCOUNTS_FILE": str(accounts_file),
        "TOKEN_IZMIR": sim.env(account="izmir")["BULUTFON_ACCESS_TOKEN"],
        "TOKEN_ANKARA": sim.env(account="ankara")["BULUTFON_ACCESS_TOKEN"],
        "TOKEN_BROKEN": "not-a-token-of-any-account",
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_START_DATE": "2015-01-01",
        "BULUTFON_MAX_RETRIES": "1",
        "BULUTFON_DOWNLOAD_RECORDINGS": "true",
    }


def test_each_account_loads_with_its_own_token_and_a_bad_one_fails_alone(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=10, accounts=["izmir", "ankara"])
    (tmp_path / "data").mkdir()
    with environment(_env(sim, tmp_path, BROKEN_TOML)):
        result = run_sync()
    # The bad account failed alone, in one line naming it; the other two loaded.
    assert set(result.failures) == {"broken"}
    line = result.failures["broken"]
    assert line.startswith("account 'broken': ") and "\n" not in line
    assert "not-a-token" not in line  # never the secret
    assert list(result.by_account) == ["izmir", "ankara"]
    for name in ("izmir", "ankara"):
        expected = {row["uuid"] for row in sim.expected_tables(name)["cdrs"]}
        stats = sim.stats(name)
        # Every detail request carrying this account's token was for one of its own
        # calls, each exactly once: no client sent another account's token.
        assert stats["detail_uuids"] == dict.fromkeys(expected, 1), name
        assert result.by_account[name].detail_total("new") == len(expected)
        # Each account's recordings go to its own folder.
        recorded = result.by_account[name].recording_total("downloaded")
        files = [p for p in (tmp_path / "data" / "recordings" / name).rglob("*") if p.is_file()]
        assert len(files) == recorded > 0
    # The two accounts' calls are different ones.
    assert not set(sim.stats("izmir")["detail_uuids"]) & set(sim.stats("ankara")["detail_uuids"])
    # Each account's directory is its own (the simulator rotates the names by seed),
    # loaded under its account with its own requests; the failed account has none.
    names = {}
    for name in ("izmir", "ankara"):
        truth = sim.account(name).directory.expected()["extensions"]
        rows = read_table(tmp_path / "warehouse.duckdb", "extensions", account=name)
        names[name] = [r["caller_name"] for r in rows]
        assert names[name] == [r["caller_name"] for r in truth], name
        assert sim.stats(name)["directory"] == {"200": 27}, name
    assert names["izmir"] != names["ankara"]
    assert accounts_of(tmp_path / "warehouse.duckdb", "extensions") == {"izmir", "ankara"}


def test_each_file_account_keeps_its_own_token_file(tmp_path: Path) -> None:
    env = {
        "BULUTFON_ACCOUNTS_FILE": str(tmp_path / "accounts.toml"),
        "TOKEN_IZMIR": "izmir-secret",
        "TOKEN_ANKARA": "ankara-secret",
        "BULUTFON_ACCESS_TOKEN": "the-default-token",
        "BULUTFON_DATA_DIR": str(tmp_path),
    }
    (tmp_path / "accounts.toml").write_text(ACCOUNTS_TOML + "max_rps = 3\n")
    resource = BulutfonResource(access_token="the-default-token", max_concurrency=7)
    izmir = resource.client_config(env, account=find_account("izmir", env))
    ankara = resource.client_config(env, account=find_account("ankara", env))
    # Its own credentials win over the resource's (today's single account's) ...
    assert (izmir.access_token, ankara.access_token) == ("izmir-secret", "ankara-secret")
    # ... its own cap (the file's, ankara's table only), the resource's other fields.
    assert (izmir.max_rps, ankara.max_rps) == (None, 3.0)
    assert izmir.max_concurrency == ankara.max_concurrency == 7
    assert izmir.token_file == tmp_path / "tokens" / "izmir.json"
    assert ankara.token_file == tmp_path / "tokens" / "ankara.json"
    # Without the file: exactly today's configuration and token file.
    default = resource.client_config(env, account=None)
    assert default.access_token == "the-default-token"
    assert default.token_file == tmp_path / "bulutfon_token.json"


def test_an_oauth_account_rotates_its_own_token_file_with_mode_0600(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=5, accounts=["izmir", "ankara"])
    state = sim.account("ankara")
    (tmp_path / "accounts.toml").write_text(
        "[accounts.ankara]\n"
        'client_id_env = "ANKARA_ID"\nclient_secret_env = "ANKARA_SECRET"\n'
        'refresh_token_env = "ANKARA_REFRESH"\n'
    )
    env = {
        **{k: v for k, v in sim.env().items() if k != "BULUTFON_ACCESS_TOKEN"},
        "BULUTFON_ACCESS_TOKEN": "",
        "BULUTFON_ACCOUNTS_FILE": str(tmp_path / "accounts.toml"),
        "ANKARA_ID": state.client_id,
        "ANKARA_SECRET": state.client_secret,
        "ANKARA_REFRESH": state.initial_refresh_token,
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_START_DATE": "2015-01-01",
    }
    with environment(env):
        result = run_sync()
    assert result.failures == {}
    token_file = tmp_path / "tokens" / "ankara.json"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert not (tmp_path / "bulutfon_token.json").exists()  # not the shared one
    assert sim.stats("izmir")["total"] == 0  # the other account was never asked


def test_an_unknown_account_is_a_setup_error_listing_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "accounts.toml").write_text(ACCOUNTS_TOML)
    env = {"BULUTFON_ACCOUNTS_FILE": str(tmp_path / "accounts.toml")}
    assert [a.name for a in select_accounts(["ankara"], env)] == ["ankara"]
    assert [a.name for a in select_accounts(None, env)] == ["izmir", "ankara"]
    with environment(env), pytest.raises(SetupError) as raised:
        run_sync(accounts=["izmir", "antalya"])
    assert str(raised.value) == "unknown account(s) 'antalya'; known: izmir, ankara"


def test_partition_keys_are_account_by_day_and_ranges_carry_the_account() -> None:
    day = dt.date(2024, 3, 1)
    key = account_day_key("izmir", day)
    assert str(key) == "izmir|2024-03-01"
    assert split_key(key) == ("izmir", day) == split_key("izmir|2024-03-01")
    assert range_tags(day, day + dt.timedelta(days=2), "izmir") == {
        "dagster/asset_partition_range_start": "izmir|2024-03-01",
        "dagster/asset_partition_range_end": "izmir|2024-03-03",
        "bulutfon/account": "izmir",
    }


def test_the_sensor_registers_the_accounts_of_the_file_once(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    accounts_file = tmp_path / "accounts.toml"

    def tick() -> list[str]:
        result = bulutfon_accounts_sensor(dg.build_sensor_context(instance=instance))
        added = [
            name for r in result.dynamic_partitions_requests or [] for name in r.partition_keys
        ]
        if added:
            instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, added)
        return added

    # No file: the `default` account.
    with environment({"BULUTFON_ACCOUNTS_FILE": ""}):
        assert tick() == ["default"]
        assert tick() == []
    # A file: its accounts are added (a new one on a later tick), never twice.
    accounts_file.write_text(ACCOUNTS_TOML)
    with environment({"BULUTFON_ACCOUNTS_FILE": str(accounts_file)}):
        assert tick() == ["izmir", "ankara"]
        assert tick() == []
        accounts_file.write_text(ACCOUNTS_TOML + BROKEN_TOML)
        assert tick() == ["broken"]
    assert instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME) == [
        "default",
        "izmir",
        "ankara",
        "broken",
    ]
    assert register_accounts(instance, ["izmir", "new"]) == ["new"]  # the runner's way


@pytest.mark.parametrize("source", ["deploy", "ui"])
def test_the_run_queue_runs_one_load_per_account_at_a_time(source: str, tmp_path: Path) -> None:
    import shutil

    from bulutfon_pipeline.cli.ui import DAGSTER_YAML

    repo = Path(__file__).resolve().parents[1]
    if source == "deploy":
        shutil.copy(repo / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    else:
        (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(tmp_path))
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    per_account = {"value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert limits == [
        {"key": "bulutfon/account", **per_account},
        {"key": "dagster/partition/account", **per_account},
    ]


@pytest.mark.slow
def test_a_sync_of_two_accounts_in_a_process_of_its_own_loads_exact_tables_per_account(
    simulator_factory, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from bulutfon_pipeline_tests.helpers import assert_tables_match

    sim = simulator_factory(days=3, calls_per_day=12, accounts=["izmir", "ankara"], seed=5)
    (tmp_path / "data").mkdir()
    env = {**os.environ, **_env(sim, tmp_path, "")}
    done = subprocess.run(
        [sys.executable, "-m", "bulutfon_pipeline.cli", "sync", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    db = tmp_path / "warehouse.duckdb"
    for name in ("izmir", "ankara"):
        expected = sim.expected_tables(name)
        # Its rows in cdrs, call_flow_steps, originations and load_rejects, exactly.
        assert_tables_match(db, expected, account=name)
        uuids = {row["uuid"] for row in expected["cdrs"]}
        assert sim.stats(name)["detail_uuids"] == dict.fromkeys(uuids, 1), name
        recorded = {row["uuid"] for row in expected["cdrs"] if row["has_recording"]}
        assert sim.stats(name)["recording_uuids"] == dict.fromkeys(recorded, 1), name


def test_a_single_account_deployment_moved_to_a_file_keeps_its_rows_and_oauth_tokens(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=8)
    db = tmp_path / "warehouse.duckdb"
    env = {
        **sim.env(auth="oauth"),
        "BULUTFON_DUCKDB_PATH": str(db),
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_START_DATE": "2015-01-01",
        "BULUTFON_DOWNLOAD_RECORDINGS": "true",
    }
    with environment(env):
        first = run_sync()  # without a file: the rotated tokens in bulutfon_token.json
    assert first.recording_total("downloaded") > 0
    legacy = tmp_path / "data" / "bulutfon_token.json"
    assert legacy.is_file()
    # The deployment grows: the file names its PBX `default`, with the same variables,
    # whose refresh token the server rotated at the first sync (so it is spent).
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        "[accounts.default]\nclient_id_env = 'BULUTFON_CLIENT_ID'\n"
        "client_secret_env = 'BULUTFON_CLIENT_SECRET'\n"
        "refresh_token_env = 'BULUTFON_REFRESH_TOKEN'\n"
    )
    sim.expire_tokens()  # so the next sync must refresh, with the rotated refresh token
    sim.reset_stats()
    with environment({**env, "BULUTFON_ACCOUNTS_FILE": str(accounts_file)}):
        result = run_sync()
    assert result.failures == {} and list(result.by_account) == ["default"]
    moved = tmp_path / "data" / "tokens" / "default.json"
    assert not legacy.exists() and stat.S_IMODE(moved.stat().st_mode) == 0o600
    assert sim.stats()["token"] == {"200": 1}  # one refresh, accepted
    assert sim.stats()["detail_uuids"] == {}  # every call was loaded already
    assert sim.stats()["recording_uuids"] == {}  # and every recording, where it is
    assert_tables_match(db, sim.expected_tables())  # the same rows, still `default`'s


def test_a_stopped_syncs_line_counts_every_accounts_calls(
    simulator_factory, tmp_path: Path
) -> None:
    from bulutfon_pipeline.runner.interrupts import _stopped_message
    from bulutfon_pipeline.runner.preflight import read_settings

    sim = simulator_factory(days=2, calls_per_day=5, accounts=["izmir", "ankara"])
    env = _env(sim, tmp_path, "")
    since = dt.datetime.now(dt.UTC)
    with environment(env):
        run_sync()
        # ankara's calls of one day back to pending, as if the signal came before them.
        db = Path(env["BULUTFON_DUCKDB_PATH"])
        day = read_table(db, "cdrs", account="ankara")[0]["call_date"]
        with duckdb.connect(str(db)) as con:
            con.execute("DELETE FROM cdrs WHERE account = 'ankara' AND call_date = ?", [day])
        line = _stopped_message(signal.SIGTERM, read_settings(), since, "sync")
    # Before, only `default`'s rows were counted: 0 loaded, nothing left.
    total = sum(len(sim.expected_tables(a)["cdrs"]) for a in ("izmir", "ankara"))
    left = sum(row["call_date"] == day for row in sim.expected_tables("ankara")["cdrs"])
    assert line == (
        f"stopped by SIGTERM: {total - left} calls loaded by this run are committed, {left} "
        f"listed calls on 1 day ({day}) still to load; run `bulutfon-pipeline sync` again to "
        "continue"
    )
