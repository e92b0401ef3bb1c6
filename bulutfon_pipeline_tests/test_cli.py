"""The `bulutfon-pipeline auth` command, the CLI's help and its error lines, as a user sees them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bulutfon_pipeline.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_auth_code_exchange_and_forced_refresh_store_tokens_without_printing_them(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=3)
    env = {**sim.env(auth="oauth"), "BULUTFON_DATA_DIR": str(tmp_path)}
    env.pop("BULUTFON_REFRESH_TOKEN", None)
    code = sim.issue_auth_code()

    exchanged = _cli(["auth", "--code", code], env)
    assert exchanged.returncode == 0, exchanged.stderr
    token_file = tmp_path / "bulutfon_token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    first = json.loads(token_file.read_text())

    refreshed = _cli(["auth", "--refresh"], env)
    assert refreshed.returncode == 0, refreshed.stderr
    second = json.loads(token_file.read_text())
    # The refresh rotated both tokens and the file holds the new pair.
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert sim.stats()["token"] == {"200": 2}

    printed = exchanged.stdout + exchanged.stderr + refreshed.stdout + refreshed.stderr
    for secret in (code, sim.client_secret, *first.values(), *second.values()):
        if isinstance(secret, str) and len(secret) >= 8:
            assert secret not in printed


def test_auth_needs_exactly_one_action(tmp_path: Path) -> None:
    result = _cli(["auth"], {"BULUTFON_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "exactly one of --code CODE or --refresh" in result.stderr


def test_help_lists_every_command() -> None:
    result = _cli(["--help"], {})
    assert result.returncode == 0
    for command in ("sync", "backfill", "sql", "demo", "auth", "simulator", "ui"):
        assert f"  {command}" in result.stdout


def test_errors_print_square_brackets_as_they_are(tmp_path: Path) -> None:
    # Each was a Rich MarkupError traceback (a closing tag "[/x]"), or lost "[...]".
    missing = tmp_path / "[/x]" / "accounts.toml"
    cases = [
        (
            ["sync"],
            {"BULUTFON_ACCOUNTS_FILE": str(missing)},
            f"error: BULUTFON_ACCOUNTS_FILE={missing}: cannot read it",
        ),
        (
            ["backfill", "--start", "[/b]", "--end", "2015-01-01"],
            {},
            "error: Invalid value for '--start': '[/b]'",
        ),
    ]
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    cases.append(
        (["sync"], {"BULUTFON_ACCOUNTS_FILE": str(empty)}, "add an [accounts.<name>] table")
    )
    for args, env, line in cases:
        result = _cli(args, {"BULUTFON_DATA_DIR": str(tmp_path), **env})
        assert result.returncode == 2, result.stderr
        assert line in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_auth_takes_the_account_whose_oauth_tokens_it_stores(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=4, accounts=["izmir", "ankara"])
    izmir = sim.env(auth="oauth", account="izmir")
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        "[accounts.izmir]\nclient_id_env = 'IZMIR_ID'\nclient_secret_env = 'IZMIR_SECRET'\n"
        "[accounts.ankara]\naccess_token_env = 'ANKARA_TOKEN'\n"
    )
    env = {
        **{k: v for k, v in izmir.items() if k.startswith(("BULUTFON_API", "BULUTFON_TOKEN_URL"))},
        "BULUTFON_ACCOUNTS_FILE": str(accounts),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "BULUTFON_START_DATE": "2015-01-01",
        "IZMIR_ID": izmir["BULUTFON_CLIENT_ID"],
        "IZMIR_SECRET": izmir["BULUTFON_CLIENT_SECRET"],
        "ANKARA_TOKEN": sim.env(account="ankara")["BULUTFON_ACCESS_TOKEN"],
    }
    code = sim.issue_auth_code("izmir")
    for args, line in [
        (["--code", code], "has several accounts; give --account (izmir, ankara)"),
        (["--code", code, "--account", "ankara"], "'ankara' signs in with a master token"),
        (["--code", code, "--account", "nope"], "unknown account(s) 'nope'"),
    ]:
        refused = _cli(["auth", *args], env)
        assert refused.returncode == 2 and line in refused.stderr, refused.stderr
    # izmir has no refresh token yet: its sync fails, saying how to get one.
    before = _cli(["sync", "--no-progress", "--account", "izmir"], env)
    assert before.returncode == 1
    assert "or run `bulutfon-pipeline auth --account NAME --code CODE`" in before.stderr
    stored = _cli(["auth", "--code", code, "--account", "izmir"], env)
    assert stored.returncode == 0, stored.stderr
    token_file = tmp_path / "tokens" / "izmir.json"
    assert f"Stored a new token pair in {token_file} (mode 0600)" in stored.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert code not in stored.stdout + stored.stderr
    after = _cli(["sync", "--no-progress", "--account", "izmir"], env)
    assert after.returncode == 0, after.stderr
    assert sim.stats("izmir")["token"] == {"200": 1}  # the code's exchange, nothing since
    assert len(sim.stats("izmir")["detail_uuids"]) == len(sim.expected_tables("izmir")["cdrs"])
