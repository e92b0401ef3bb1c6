"""The reliability scenarios with several PBX accounts in one sync: a SIGKILL mid-load,
one account's API throttling and failing at random, and one account's wrong token. The
rerun loads every good account exactly; the bad account fails alone, named."""

from __future__ import annotations

import signal

import pytest

from bulutfon_pipeline.faults import CRASH_ENV
from bulutfon_pipeline_tests.helpers import accounts_of, assert_tables_match, read_table
from bulutfon_pipeline_tests.reliability.conftest import WorkspaceFactory

pytestmark = pytest.mark.reliability

GOOD = ("izmir", "ankara", "bursa")
ACCOUNTS_TOML = "".join(
    f'[accounts.{name}]\naccess_token_env = "TOKEN_{name.upper()}"\n\n'
    for name in (*GOOD, "broken")
)


def test_crash_faults_and_a_bad_token_across_accounts(
    simulator_factory, workspace: WorkspaceFactory
) -> None:
    sim = simulator_factory(days=2, calls_per_day=12, seed=21, accounts=list(GOOD))
    # ankara's API throttles and fails at random; the others answer cleanly.
    sim.configure(account="ankara", random_429_rate=0.15, error_rate=0.1, fault_seed=5)
    ws = workspace(sim, BULUTFON_DETAIL_BATCH_SIZE="5", BULUTFON_MAX_CONCURRENCY="2")
    accounts_file = ws.root / "accounts.toml"
    accounts_file.write_text(ACCOUNTS_TOML)
    ws.env.update(
        {f"TOKEN_{name.upper()}": sim.env(account=name)["BULUTFON_ACCESS_TOKEN"] for name in GOOD}
    )
    ws.env.update(
        BULUTFON_ACCOUNTS_FILE=str(accounts_file),
        BULUTFON_ACCESS_TOKEN="",
        TOKEN_BROKEN="not-a-token-of-any-account",
    )
    ws.secrets.append("not-a-token-of-any-account")

    # Killed inside the write of a detail batch (the process's 3rd, whichever account's).
    crashed = ws.run(extra={CRASH_ENV: "details_write@3"})
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    loaded_before = _loaded(ws)
    assert len(loaded_before) < 3 * 24

    rerun = ws.run()
    # The broken account fails alone, in one line naming it; the sync exits 1.
    assert rerun.returncode == 1, (rerun.returncode, rerun.stderr)
    assert "Traceback" not in rerun.stderr
    assert "account 'broken'" in rerun.stderr
    # ... and says which variable to check: the account's own, not the single-account one.
    (line,) = [x for x in rerun.stderr.splitlines() if "account 'broken'" in x]
    assert "check TOKEN_BROKEN (account 'broken'" in line, line
    assert "BULUTFON_ACCESS_TOKEN" not in line, line
    for name in GOOD:
        assert_tables_match(ws.warehouse, sim.expected_tables(name), account=name)
    assert accounts_of(ws.warehouse, "cdrs") == set(GOOD)
    # What the crash committed stayed, and no account's call was fetched three times.
    assert loaded_before <= _loaded(ws)
    for name in ("izmir", "bursa"):  # clean APIs: a call is fetched again only after the kill
        fetched = sim.stats(account=name)["detail_uuids"]
        assert max(fetched.values()) <= 2, (name, fetched)
    faulty = sim.stats(account="ankara")["detail"]
    assert sum(n for status, n in faulty.items() if status != "200") > 0, faulty


def _loaded(ws) -> set[tuple[str, str]]:
    """(account, uuid) of every ``cdrs`` row."""
    return {
        (name, r["uuid"]) for name in GOOD for r in read_table(ws.warehouse, "cdrs", account=name)
    }
