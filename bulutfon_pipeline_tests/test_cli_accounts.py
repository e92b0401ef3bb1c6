"""The CLI's accounts: `--account`, the `accounts` command, and the exit code of a sync
where some account failed; in-process (click's runner), against the simulator."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from bulutfon_pipeline.cli.main import main
from bulutfon_pipeline.runner import run_accounts_status, run_sync
from bulutfon_pipeline.runner.accounts import record_outcomes
from bulutfon_pipeline.runner.preflight import read_settings
from bulutfon_pipeline.settings import LOCAL_TZ, Settings
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.fixtures.marts import insert_calls
from bulutfon_pipeline_tests.helpers import BACKENDS, WarehouseTarget, environment

ACCOUNTS_TOML = """
[accounts.izmir]
access_token_env = "TOKEN_IZMIR"

[accounts.missing]
access_token_env = "TOKEN_MISSING"
"""


def _env(sim, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **sim.env(),
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_START_DATE": "2015-01-01",
        **extra,
    }


def _file_env(sim, tmp_path: Path) -> dict[str, str]:
    """izmir (its token) and `missing`, whose variable is not set."""
    (tmp_path / "accounts.toml").write_text(ACCOUNTS_TOML)
    return _env(
        sim,
        tmp_path,
        BULUTFON_ACCESS_TOKEN="",
        BULUTFON_ACCOUNTS_FILE=str(tmp_path / "accounts.toml"),
        TOKEN_IZMIR=sim.env(account="izmir")["BULUTFON_ACCESS_TOKEN"],
        TOKEN_MISSING="",
    )


def test_accounts_lists_the_default_account_with_its_state(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=10)
    runner = CliRunner()
    with environment(_env(sim, tmp_path, BULUTFON_ACCOUNTS_FILE="")):
        before = runner.invoke(main, ["accounts"])
        assert before.exit_code == 0, before.output
        row = _row(before.output, "default")
        assert row == ["default (no accounts file)", "never", "never", "0"]
        run_sync(listing=True, start=None, end=None)
        mark = Warehouse.from_settings(Settings.from_env()).high_water_mark()
        after = runner.invoke(main, ["accounts"])
    assert after.exit_code == 0, after.output
    _, last, high, pending = _row(after.output, "default")
    assert high == f"{mark.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M:%S}"
    assert last != "never" and pending == "0"
    # The table says which clock its times are on.
    assert f"local time ({LOCAL_TZ.key})" in " ".join(after.output.split())


def _row(output: str, name: str) -> list[str]:
    """The cells of ``name``'s row of a rich table (without the pending-days cell when
    empty)."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if cells and cells[0].startswith(name):
            return cells
    raise AssertionError(f"no row for {name} in:\n{output}")


def test_an_unknown_account_exits_2_naming_the_known_ones(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=3, accounts=["izmir"])
    runner = CliRunner()
    with environment(_file_env(sim, tmp_path)):
        for args in (
            ["sync", "--account", "izmir", "--account", "antalya", "--no-progress"],
            ["backfill", "--start", "2015-01-01", "--end", "2015-01-02", "--account", "antalya"],
            ["purge-recordings", "--before", "2015-01-01", "--account", "antalya"],
            ["accounts", "--account", "antalya"],
        ):
            result = runner.invoke(main, args)
            assert result.exit_code == 2, (args, result.output)
            assert "unknown account(s) 'antalya'; known: izmir, missing" in result.output
    assert sim.stats()["total"] == 0  # nothing was asked of the API


def test_a_sync_where_one_account_fails_loads_the_other_and_exits_1(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=10, accounts=["izmir"])
    runner = CliRunner()
    with environment(_file_env(sim, tmp_path)):
        result = runner.invoke(main, ["sync", "--no-progress"])
        listed = runner.invoke(main, ["accounts"])
    assert result.exit_code == 1, result.output
    assert (
        "error: account 'missing': its access_token_env names TOKEN_MISSING, which is not set"
        in result.output
    )
    assert "1 of 2 accounts failed; loaded: izmir" in result.output
    # izmir loaded every call of its own, each detail fetched once.
    expected = {row["uuid"] for row in sim.expected_tables("izmir")["cdrs"]}
    first = sim.stats("izmir")
    assert first["detail_uuids"] == dict.fromkeys(expected, 1)
    # The table by account, in the file's order: izmir's counts (its API requests are the
    # simulator's listing and detail requests; the directory's are counted apart) and
    # `missing` failed.
    calls, asked = str(len(expected)), sum(first["listing"].values()) + len(expected)
    izmir = _row(result.output.split("by account")[1], "izmir")
    assert izmir[:7] + izmir[8:] == [
        "izmir", calls, calls, "0", "0", str(asked), "0", "loaded"
    ]  # fmt: skip
    assert _row(result.output.split("by account")[1], "missing") == ["missing", "failed"]
    assert listed.exit_code == 0, listed.output
    assert [_row(listed.output, n)[0] for n in ("izmir", "missing")] == ["izmir", "missing"]
    # `--account izmir` alone: nothing fails, nothing is left to fetch.
    with environment(_file_env(sim, tmp_path)):
        again = runner.invoke(main, ["sync", "--account", "izmir", "--no-progress"])
    assert again.exit_code == 0, again.output
    second = sim.stats("izmir")
    assert second["detail_uuids"] == dict.fromkeys(expected, 1)
    by_account = again.output.split("by account")[1]
    rescanned = sum(second["listing"].values()) - sum(first["listing"].values())
    assert _row(by_account, "izmir")[1:7] == ["0", "0", "0", "0", str(rescanned), "0"]
    assert "missing" not in by_account
    # The summary counts the directory apart: izmir's first sync opened its 44 versions
    # (20 extensions, 2 groups, 20 memberships, 2 numbers), the second wrote none; 27
    # requests each.
    assert _row(result.output, "directory versions opened / closed")[-1] == "44 / 0 (27)"
    assert _row(again.output, "directory versions opened / closed")[-1] == "0 / 0 (27)"


def test_report_of_every_account_and_of_one(tmp_path: Path) -> None:
    # The nine hand-made calls of fixtures/marts.py as two accounts' calls, in-process.
    (tmp_path / "accounts.toml").write_text(ACCOUNTS_TOML)
    env = {
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_ACCOUNTS_FILE": str(tmp_path / "accounts.toml"),
    }
    runner = CliRunner()
    with environment(env):
        missing = runner.invoke(main, ["report"])
        assert missing.exit_code == 2
        assert "run `bulutfon-pipeline sync` first" in missing.output
        wh = Warehouse(tmp_path / "warehouse.duckdb")
        wh.ensure_schema()
        insert_calls(wh, account="default")
        insert_calls(wh, account="izmir")
        unknown = runner.invoke(main, ["report", "--account", "ankara"])
        assert unknown.exit_code == 2
        assert "ankara" in unknown.output and "izmir" in unknown.output
        every = runner.invoke(main, ["report"])
        one = runner.invoke(main, ["report", "--account", "izmir"])
    assert every.exit_code == 0 and one.exit_code == 0, every.output + one.output
    today = dt.datetime.now(LOCAL_TZ).date().isoformat()
    assert Path(every.output.strip()) == tmp_path / "reports" / f"call_report_{today}.html"
    assert Path(one.output.strip()) == tmp_path / "reports" / f"call_report_izmir_{today}.html"
    page = Path(every.output.strip()).read_text(encoding="utf-8")
    accounts = page[page.index('<section id="accounts">') :]
    assert re.findall(r"<tr><td>([a-z]+)</td><td class='num'>(\d+)</td>", accounts)[:2] == [
        ("default", "9"),
        ("izmir", "9"),
    ]
    alone = Path(one.output.strip()).read_text(encoding="utf-8")
    assert "<h1>Bulutfon call report – izmir</h1>" in alone
    assert '<section id="accounts">' not in alone


def test_a_multi_account_summary_names_each_range_of_days_once(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=3, accounts=["izmir", "ankara"])
    (tmp_path / "accounts.toml").write_text(
        '[accounts.izmir]\naccess_token_env = "TOKEN_IZMIR"\n'
        '[accounts.ankara]\naccess_token_env = "TOKEN_ANKARA"\n'
    )
    env = _env(
        sim,
        tmp_path,
        BULUTFON_ACCESS_TOKEN="",
        BULUTFON_ACCOUNTS_FILE=str(tmp_path / "accounts.toml"),
        TOKEN_IZMIR=sim.env(account="izmir")["BULUTFON_ACCESS_TOKEN"],
        TOKEN_ANKARA=sim.env(account="ankara")["BULUTFON_ACCESS_TOKEN"],
    )
    with environment(env):
        result = CliRunner().invoke(main, ["sync", "--no-progress"])
    assert result.exit_code == 0, result.output
    # Both accounts loaded the same days: the row names them once, not once per account.
    days = sorted(
        {str(row["call_date"]) for name in ("izmir", "ankara")
         for row in sim.expected_tables(name)["cdrs"]}
    )  # fmt: skip
    expected = days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"
    assert _row(result.output, "days loaded")[-1] == expected


def test_accounts_json_gives_each_accounts_state_in_utc(simulator_factory, tmp_path: Path) -> None:
    sim = simulator_factory(days=2, calls_per_day=10, accounts=["izmir"])
    runner = CliRunner()
    never = {"last_load": None, "high_water_mark": None, "pending_calls": 0, "pending_days": [],
             "last_error": None}  # fmt: skip
    with environment(_file_env(sim, tmp_path)):
        before = runner.invoke(main, ["accounts", "--json"])
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)
        assert runner.invoke(main, ["sync", "--no-progress"]).exit_code == 1  # `missing`
        # Three calls of the first day lose their cdrs row: listed, not loaded.
        cdrs = sorted(sim.expected_tables("izmir")["cdrs"], key=lambda row: row["call_time"])
        gone = cdrs[:3]
        con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
        con.execute(
            "DELETE FROM cdrs WHERE account = 'izmir' AND uuid IN (SELECT unnest(?))",
            [[row["uuid"] for row in gone]],
        )
        con.close()
        after = runner.invoke(main, ["accounts", "--json"])
        alone = runner.invoke(main, ["accounts", "--json", "--account", "missing"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout) == [
        {"account": "izmir", "from_file": True, **never},
        {"account": "missing", "from_file": True, **never},
    ]
    assert after.exit_code == 0, after.output
    izmir, missing = json.loads(after.stdout)
    # `missing` failed: its error line (as printed, no secret) and when, kept in the warehouse.
    failed = missing["last_error"]
    assert failed["error"] == (
        "account 'missing': its access_token_env names TOKEN_MISSING, which is not set"
    )
    assert started <= dt.datetime.fromisoformat(failed["at"]) <= dt.datetime.now(dt.UTC)
    assert {**missing, "last_error": None} == {"account": "missing", "from_file": True, **never}
    newest = max(row["call_time"] for row in cdrs).astimezone(dt.UTC)
    loaded = dt.datetime.fromisoformat(izmir.pop("last_load"))
    assert started <= loaded <= dt.datetime.now(dt.UTC)
    assert izmir == {
        "account": "izmir",
        "from_file": True,
        "high_water_mark": f"{newest:%Y-%m-%dT%H:%M:%SZ}",
        "pending_calls": 3,
        "pending_days": sorted({row["call_date"].isoformat() for row in gone}),
        "last_error": None,
    }
    assert json.loads(alone.stdout) == [missing]
    # Its next sync loads (its variable now set, to izmir's token): the error is cleared.
    env = {**_file_env(sim, tmp_path), "TOKEN_MISSING": sim.env(account="izmir")[
        "BULUTFON_ACCESS_TOKEN"]}  # fmt: skip
    with environment(env):
        assert runner.invoke(main, ["sync", "--account", "missing", "--no-progress"]).exit_code == 0
        cleared = runner.invoke(main, ["accounts", "--json", "--account", "missing"])
    assert json.loads(cleared.stdout)[0]["last_error"] is None


def test_sync_json_gives_the_totals_and_each_accounts_part(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=10, accounts=["izmir"])
    with environment(_file_env(sim, tmp_path)):
        result = CliRunner().invoke(main, ["sync", "--json"])
    assert result.exit_code == 1, result.output  # `missing` failed
    summary = json.loads(result.stdout)  # stdout holds the JSON alone: no table, no bar
    cdrs = sim.expected_tables("izmir")["cdrs"]
    stats = sim.stats("izmir")
    calls, listed = len(cdrs), sum(stats["listing"].values())
    days = sorted({row["call_date"].isoformat() for row in cdrs})
    izmir = {
        "account": "izmir",
        "result": "loaded",
        "listing": {"pages": listed, "calls": calls, "new": calls, "changed": 0},
        "directory": {"opened": 44, "closed": 0, "requests": sum(stats["directory"].values())},
        "days": [[days[0], days[-1]]],
        "details": {"fetched": calls, "new": calls, "updated": 0},
        "rejected": 0,
        "recordings": None,
        "api": {"requests": listed + calls, "retries": 0, "rate_limited": 0, "refreshes": 0},
    }
    loaded, failed = summary.pop("accounts")
    # Durations: each account's within the whole sync's.
    assert 0 < loaded.pop("seconds") <= summary.pop("seconds")
    assert loaded == izmir
    assert failed == {
        "account": "missing",
        "result": "failed",
        "error": "account 'missing': its access_token_env names TOKEN_MISSING, which is not set",
    }
    # The totals are izmir's, the only account that loaded; the copy was published.
    assert summary.pop("published") == str(tmp_path / "warehouse.analytics.duckdb")
    del izmir["account"], izmir["result"]
    assert summary == {"command": "sync", **izmir}


def test_backfill_json_without_an_accounts_file(simulator_factory, tmp_path: Path) -> None:
    sim = simulator_factory(days=2, calls_per_day=10)
    cdrs = sim.expected_tables()["cdrs"]
    day = min(row["call_date"] for row in cdrs)
    with environment(_env(sim, tmp_path, BULUTFON_ACCOUNTS_FILE="")):
        result = CliRunner().invoke(
            main, ["backfill", "--start", day.isoformat(), "--end", day.isoformat(), "--json"]
        )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # The listing scanned (every call), then that day's calls loaded: no accounts file,
    # so no entry per account.
    stats, of_day = sim.stats(), sum(row["call_date"] == day for row in cdrs)
    listed = sum(stats["listing"].values())
    assert (summary["command"], summary["days"]) == ("backfill", [[day.isoformat()] * 2])
    assert summary["listing"] == {"pages": listed, "calls": len(cdrs), "new": len(cdrs),
                                  "changed": 0}  # fmt: skip
    assert summary["details"] == {"fetched": of_day, "new": of_day, "updated": 0}
    assert summary["api"]["requests"] == listed + sum(stats["detail"].values()) == listed + of_day
    assert summary["accounts"] == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_accounts_last_error_is_kept_until_it_loads(
    backend: str, target: WarehouseTarget, tmp_path: Path
) -> None:
    (tmp_path / "accounts.toml").write_text(ACCOUNTS_TOML)  # izmir and missing
    env = {**target.env, "BULUTFON_DATA_DIR": str(tmp_path),
           "BULUTFON_ACCOUNTS_FILE": str(tmp_path / "accounts.toml")}  # fmt: skip
    with environment(env):
        warehouse = Warehouse.from_settings(read_settings())
        warehouse.ensure_schema()
        record_outcomes(warehouse, ["izmir", "missing"], {"missing": "account 'missing': down"})
        failed = {s.name: s.last_error for s in run_accounts_status()}
        record_outcomes(warehouse, ["missing"], {"missing": "account 'missing': still down"})
        again = {s.name: s.last_error for s in run_accounts_status()}
        record_outcomes(warehouse, ["missing"], {})  # its next sync loaded
        cleared = {s.name: s.last_error for s in run_accounts_status()}
    assert failed == {"izmir": None, "missing": "account 'missing': down"}
    assert again == {"izmir": None, "missing": "account 'missing': still down"}  # replaced
    assert cleared == {"izmir": None, "missing": None}


def test_reconcile_shows_each_accounts_changes_and_takes_account(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=10, dialect="v1", accounts=["izmir", "ankara"])
    env = _file_env(sim, tmp_path)  # izmir and `missing`, and ankara after them:
    env["TOKEN_ANKARA"] = sim.env(account="ankara")["BULUTFON_ACCESS_TOKEN"]
    with (tmp_path / "accounts.toml").open("a") as file:
        file.write('\n[accounts.ankara]\naccess_token_env = "TOKEN_ANKARA"\n')
    runner = CliRunner()
    with environment(env):
        assert runner.invoke(main, ["sync", "--no-progress"]).exit_code == 1  # `missing`
        call = sim.expected_tables("ankara")["cdrs"][0]
        sim.change_call(call["uuid"], account="ankara", call_price="2.5000")
        start = ["reconcile", "--start", call["call_date"].isoformat(), "--no-progress"]
        every = runner.invoke(main, start)
        izmir = runner.invoke(main, [*start, "--account", "izmir"])
    # Every account's changes, named by account (before: only `default`'s, so none).
    assert every.exit_code == 1, every.output  # `missing` failed, as in a sync
    assert "1 of 3 accounts failed; loaded: izmir, ankara" in every.output
    row = _row(every.output, "ankara")
    assert row[:4] == ["ankara", call["call_date"].isoformat(), call["uuid"], "call_price"]
    assert row[-1] == "2.5000"
    assert "1 calls changed, 1 details fetched, 1 changes" in every.output
    assert izmir.exit_code == 0, izmir.output
    assert "0 calls changed, 0 details fetched, 0 changes" in izmir.output
