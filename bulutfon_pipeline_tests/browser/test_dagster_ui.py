"""The Dagster UI in a real Chromium, against `dagster dev` and the simulator.

A user's day one: open the asset graph, see the bulutfon assets, their checks and the
account x day partitions of ``cdrs`` (one account, ``default``: no accounts file);
materialize the listing (of that account) and launch a 3-day backfill from the UI's own
dialogs; the daemon runs it; the warehouse then holds exactly those days and the UI shows
the materializations with their metadata. Screenshots go to ``test-artifacts/browser/``.

``make test-browser`` runs it; it needs ``/usr/bin/chromium`` (Debian's ``chromium``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer
from bulutfon_pipeline_tests.browser.stack import (
    DAGSTER_DEV_GROUP,
    REPO_ROOT,
    DagsterDev,
    GraphQLError,
    wait_for,
)
from bulutfon_pipeline_tests.helpers import expected_rows, read_table

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600), DAGSTER_DEV_GROUP]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
DAYS, CALLS_PER_DAY = 5, 20
BACKFILL_DAYS = 3  # the oldest three of the five days
DETAIL_ASSETS = ("cdrs", "raw_cdr_details", "call_flow_steps", "originations")
CHECKS = {
    "cdrs": ("cdrs_complete", "cdrs_reject_rate", "cdrs_uuid_unique"),
    "call_flow_steps": ("call_flow_steps_has_parent", "call_flow_steps_key_unique"),
    "originations": ("originations_has_parent", "originations_key_unique"),
    "raw_cdr_details": ("raw_cdr_details_uuid_unique",),
}
RUN_TIMEOUT_S = 180.0
BACKFILL_TIMEOUT_S = 300.0
UI_TIMEOUT_MS = 60_000  # a 2-core CI machine renders the asset graph slowly


def _require_browser() -> None:
    """Skip on a workstation without Chromium; in CI a missing browser is a failure."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {problem}")
    pytest.skip(f"browser test skipped: {problem}; see README, 'make test-browser'")


@dataclass
class Stack:
    sim: SimulatorServer
    dagster: DagsterDev
    db: Path
    days: list[dt.date]  # every simulated day, oldest first


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The simulator (in-process) and `dagster dev` (webserver + daemon) pointed at it."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("dagster_ui")
    config = SimulatorConfig(days=DAYS, calls_per_day=CALLS_PER_DAY)
    days = [config.end_date - dt.timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    db = tmp / "warehouse.duckdb"
    env = {
        "BULUTFON_DUCKDB_PATH": str(db),
        "BULUTFON_DATA_DIR": str(tmp / "data"),
        "BULUTFON_START_DATE": days[0].isoformat(),
        "BULUTFON_MAX_RETRIES": "2",
    }
    (tmp / "data").mkdir()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "failure.png").unlink(missing_ok=True)  # from an earlier run
    with SimulatorServer(config) as sim:
        env.update(sim.env(auth="master"))
        with DagsterDev(tmp / "dagster_home", env, ARTIFACTS / "dagster-dev.log") as dagster:
            # The account partition, at once (bulutfon_accounts_sensor adds it on its tick).
            dagster.add_account("default")
            yield Stack(sim=sim, dagster=dagster, db=db, days=days)


@pytest.fixture(scope="module")
def page(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            tab = context.new_page()
            # A fresh DAGSTER_HOME greets the first visitor with a "Join the community"
            # dialog; answer it the way a user would whenever it covers what we click.
            skip = tab.get_by_role("button", name="Skip")
            tab.add_locator_handler(skip, lambda button: button.click())
            yield tab
        finally:
            browser.close()


def _shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


# --- GraphQL ------------------------------------------------------------------------------

RUNS = """{ runsOrError { __typename ... on Runs { results {
  runId status assetSelection { path } tags { key value } } } } }"""
BACKFILLS = """{ partitionBackfillsOrError { __typename ... on PartitionBackfills { results {
  id status numPartitions isAssetBackfill assetSelection { path }
  runs { runId status tags { key value } } } } } }"""
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
#: A failed run's error messages, for the assertion's message.
RUN_ERRORS = """query($runId: ID!) { logsForRun(runId: $runId) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { message }
  ... on ExecutionStepFailureEvent { error { message } }
  ... on RunFailureEvent { error { message } } } } } }"""
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def _runs(dagster: DagsterDev, asset: str) -> list[dict[str, Any]]:
    runs = dagster.graphql(RUNS)["runsOrError"]["results"]
    return [r for r in runs if [asset] in [k["path"] for k in r["assetSelection"] or []]]


def _finished_run(dagster: DagsterDev, asset: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        runs = _runs(dagster, asset)
        return runs[0] if runs and runs[0]["status"] in TERMINAL_RUN else None

    run = wait_for(f"the {asset} run to finish", probe, timeout=RUN_TIMEOUT_S, every=1.0)
    if run["status"] != "SUCCESS":
        try:
            logs = dagster.graphql(RUN_ERRORS, {"runId": run["runId"]})["logsForRun"]
            errors = [e["error"]["message"] for e in logs.get("events", []) if e.get("error")]
        except GraphQLError as error:  # the message still names the run
            errors = [f"(its errors could not be read: {error})"]
        pytest.fail(f"{asset} run {run['runId']} ended {run['status']}: {errors}")
    return run


def _finished_backfill(dagster: DagsterDev) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        backfills = dagster.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
        return backfills[0] if backfills and backfills[0]["status"] in TERMINAL_BACKFILL else None

    return wait_for(
        "the daemon to finish the backfill", probe, timeout=BACKFILL_TIMEOUT_S, every=2.0
    )


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


# --- the test -----------------------------------------------------------------------------


def test_ui_backfill_loads_the_chosen_days_and_shows_their_metadata(
    stack: Stack, page: Any
) -> None:
    from playwright.sync_api import expect

    dagster = stack.dagster
    url = dagster.url
    first, last = stack.days[0], stack.days[BACKFILL_DAYS - 1]
    chosen = stack.days[:BACKFILL_DAYS]
    try:
        # 1. The asset graph of the group: five assets, the checks on the detail tables.
        page.goto(f"{url}/locations/bulutfon_pipeline.definitions/asset-groups/bulutfon")
        for asset in ("cdr_listing", *DETAIL_ASSETS):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        # Daily partitions from BULUTFON_START_DATE up to today's (still filling) day.
        today = dt.datetime.now(LOCAL_TZ).date()
        counts = {(today - first).days + 1, (today - first).days + 2}  # midnight may pass
        partitions = re.compile("|".join(f"^{n:,} partitions$" for n in sorted(counts)))
        expect(page.get_by_text(partitions).first).to_be_visible()
        assert page.get_by_text(partitions).count() >= len(DETAIL_ASSETS)
        expect(page.get_by_text("0 / 3 Passed").first).to_be_visible()  # cdrs' three checks
        assert page.get_by_text("0 / 2 Passed").count() >= 2  # flow steps, originations
        expect(page.get_by_text("0 / 1 Passed").first).to_be_visible()  # raw_cdr_details
        expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
        _shot(page, "01-asset-graph")

        # 2. cdrs: its daily partitions, all missing, and its checks by name.
        page.goto(f"{url}/assets/cdrs?view=partitions")
        expect(page.get_by_text(re.compile(r"^Missing \(\d[\d,]*\)$"))).to_be_visible()
        expect(page.get_by_text("Materialized (0)")).to_be_visible()
        expect(page.get_by_text(today.isoformat(), exact=True).first).to_be_visible()
        _shot(page, "02-cdrs-partitions")
        page.goto(f"{url}/assets/cdrs?view=checks")
        for name in CHECKS["cdrs"]:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        _shot(page, "03-cdrs-checks")

        # 3. The listing first, from its asset page's Materialize button: the dialog of a
        # partitioned asset, with its one account.
        page.goto(f"{url}/assets/cdr_listing")
        page.locator("button", has_text=re.compile(r"^Materialize")).first.click()
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        dialog.get_by_role("button", name="All", exact=True).click()
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
        _shot(page, "03b-launch-listing-dialog")
        dialog.get_by_role("button", name=re.compile(r"^Launch")).click()
        expect(page.get_by_text(re.compile(r"^(Launched run|Created backfill)"))).to_be_visible()
        listing_run = _finished_run(dagster, "cdr_listing")
        assert _tags(listing_run).get("dagster/partition") == "default"

        # 4. The backfill, through the UI's launch dialog: the three oldest days.
        page.goto(f"{url}/assets/cdrs")
        expect(page.get_by_text("cdr_listing", exact=True).first).to_be_visible()
        page.locator("button", has_text="Materialize…").first.click()
        # cdr_details is one multi-asset: the UI says the other three come along.
        page.get_by_role("dialog").filter(has_text="Additional assets").get_by_role(
            "button", name="Confirm"
        ).click()
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        expect(dialog).to_contain_text("4 assets")
        # One selector per dimension: every account (there is one, `default`), which shows
        # the day dimension's range field; the days; and the account again (the dialog
        # clears the accounts when the days change).
        all_accounts = dialog.get_by_role("button", name="All", exact=True).first
        all_accounts.click()
        selection = dialog.get_by_placeholder(re.compile(r"^ex: ")).first
        selection.fill(f"[{first.isoformat()}...{last.isoformat()}]")
        selection.press("Enter")
        all_accounts.click()
        expect(dialog.get_by_text("default", exact=True).first).to_be_visible()
        expect(dialog.get_by_text(f"{BACKFILL_DAYS} partitions", exact=True)).to_be_visible()
        _shot(page, "04-launch-backfill-dialog")
        dialog.get_by_role("button", name="Launch backfill").click()
        expect(page.get_by_text("Created backfill")).to_be_visible()

        # 5. The daemon runs it: one run for the three days (BackfillPolicy.multi_run).
        backfill = _finished_backfill(dagster)
        assert backfill["status"] == "COMPLETED_SUCCESS", backfill
        assert backfill["numPartitions"] == BACKFILL_DAYS
        assert sorted(k["path"][0] for k in backfill["assetSelection"]) == sorted(DETAIL_ASSETS)
        assert [r["status"] for r in backfill["runs"]] == ["SUCCESS"]
        tags = _tags(backfill["runs"][0])
        assert tags["dagster/asset_partition_range_start"] == f"default|{first.isoformat()}"
        assert tags["dagster/asset_partition_range_end"] == f"default|{last.isoformat()}"
        page.goto(f"{url}/runs/b/{backfill['id']}")
        expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
        for asset in DETAIL_ASSETS:
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        expect(page.get_by_text("100% completed")).to_have_count(len(DETAIL_ASSETS))
        _shot(page, "05-backfill")

        # 6. The warehouse holds exactly the chosen days, equal to the simulator's truth.
        expected = stack.sim.expected_tables()
        want_cdrs = [r for r in expected_rows(expected, "cdrs") if r["call_date"] in chosen]
        got_cdrs = read_table(stack.db, "cdrs", list(want_cdrs[0]))
        per_day = Counter(r["call_date"] for r in got_cdrs)
        assert per_day == Counter(r["call_date"] for r in want_cdrs)
        assert set(per_day) == set(chosen)
        assert got_cdrs == want_cdrs
        uuids = {r["uuid"] for r in want_cdrs}
        for table in ("call_flow_steps", "originations"):
            want = [r for r in expected_rows(expected, table) if r["cdr_uuid"] in uuids]
            assert want, f"the simulator's {table} for the chosen days is empty"
            assert read_table(stack.db, table, list(want[0])) == want, table

        # 7. The UI shows the materializations and their metadata, per partition.
        page.goto(f"{url}/assets/cdrs?view=partitions&partition=default|{stack.days[1]}")
        expect(page.get_by_text(f"Materialized ({BACKFILL_DAYS})")).to_be_visible()
        metadata = page.locator("tr", has=page.get_by_text("calls_new", exact=True))
        # One run loaded the range, so each partition carries the range's numbers.
        expect(metadata).to_contain_text(str(len(want_cdrs)))
        expect(page.locator("tr", has=page.get_by_text("range", exact=True))).to_contain_text(
            f"{first.isoformat()}..{last.isoformat()}"
        )
        expect(
            page.locator("tr", has=page.get_by_text("calls_rejected", exact=True))
        ).to_contain_text("0")
        _shot(page, "06-cdrs-partition-materialization")

        # 8. Back on the graph: every check passed (the unloaded days are within the
        # lookback, so cdrs_complete holds).
        page.goto(f"{url}/locations/bulutfon_pipeline.definitions/asset-groups/bulutfon")
        expect(page.get_by_text("3 / 3 Passed").first).to_be_visible()
        assert page.get_by_text("2 / 2 Passed").count() >= 2  # flow steps, originations
        expect(page.get_by_text("1 / 1 Passed").first).to_be_visible()  # raw_cdr_details
        expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
        _shot(page, "07-asset-graph-after-backfill")
    except BaseException:
        _shot(page, "failure")
        print(f"dagster dev log (tail), full log in {dagster.log_path}:\n{dagster.log_tail()}")
        raise
