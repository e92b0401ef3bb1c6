"""End-to-end tests of the Dagster pipeline against the simulator, over real HTTP.

``target`` is the warehouse a test loads: a DuckDB file, or (tests parametrized with
``backend``) a PostgreSQL database on the tests' server. On both: the assets with their
checks, and the listing paged while calls arrive. DuckDB only, to keep the suite's time:
the dialects' comparison (they meet in the normaliser, before any backend), late and
new calls (the same syncs as the paged listing's, plus a count of detail requests that
test_changes.py also makes on PostgreSQL), the seven-day backfill (the runner's ranged
path, which test_changes.py's reconcile runs on PostgreSQL); and the CLI's errors and file
lock (PostgreSQL's bad URLs and advisory lock are in reliability/).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from bulutfon_pipeline.assets import cdr_details, cdr_listing
from bulutfon_pipeline.partitions import range_tags, register_accounts
from bulutfon_pipeline.resources import default_resources
from bulutfon_pipeline.runner import run_sync
from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline_tests.helpers import (
    BACKENDS,
    WarehouseTarget,
    assert_tables_match,
    environment,
    read_table,
    table_snapshot,
)

DETAIL_ASSETS = ["cdrs", "raw_cdr_details", "call_flow_steps", "originations"]


def _env(
    sim, tmp_path: Path, target: WarehouseTarget | None = None, **extra: str
) -> dict[str, str]:
    """The pipeline's environment: the simulator, ``target``'s warehouse (default: the
    DuckDB file ``tmp_path/warehouse.duckdb``), the data folder ``tmp_path``."""
    where = target.env if target else {"BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb")}
    return {
        **sim.env(auth="master"),
        **where,
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_START_DATE": "2015-01-01",
        # Persistently bad bodies are retried; keep that short in tests.
        "BULUTFON_MAX_RETRIES": "2",
        **extra,
    }


def _detail_requests(sim) -> int:
    return sum(int(n) for n in sim.stats().get("detail", {}).values())


def _listing_requests(sim) -> int:
    return sum(int(n) for n in sim.stats().get("listing", {}).values())


def _materialize_all(first: dt.date, last: dt.date) -> Any:
    """The listing, then one ranged run of the detail assets, the way a backfill runs; the
    ranged run's result."""
    instance = dg.DagsterInstance.ephemeral()
    register_accounts(instance, ["default"])
    listing = dg.materialize(
        [cdr_listing, cdr_details],
        selection=["cdr_listing"],
        resources=default_resources(),
        instance=instance,
        partition_key="default",
    )
    assert listing.success
    details = dg.materialize(
        [cdr_listing, cdr_details],
        selection=DETAIL_ASSETS,
        resources=default_resources(),
        instance=instance,
        tags=range_tags(first, last),
    )
    assert details.success
    checks = {e.check_name: e.passed for e in details.get_asset_check_evaluations()}
    assert checks["cdrs_uuid_unique"] and checks["call_flow_steps_has_parent"]
    assert checks["originations_has_parent"] and checks["cdrs_complete"]
    return details


def _partition_counts(details: Any, asset: str) -> dict[str, dict[str, int]]:
    """Each partition's own ``partition_*`` counts in the ranged run's materializations."""
    out = {}
    for event in details.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            meta = event.materialization.metadata
            out[str(event.partition)] = {
                k.removeprefix("partition_"): meta[k].value
                for k in meta
                if k.startswith("partition_")
            }
    return out


def _days(sim) -> tuple[dt.date, dt.date]:
    config = sim.dataset.config
    return config.end_date - dt.timedelta(days=config.days - 1), config.end_date


def test_definitions_load_with_no_environment() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BULUTFON_", "DAGSTER_"))}
    code = (
        "from bulutfon_pipeline.definitions import defs\n"
        "g = defs.resolve_asset_graph()\n"
        "print(sorted(k.to_user_string() for k in g.get_all_asset_keys()))\n"
        "print(sorted(c.name for c in g.asset_check_keys))\n"
        "print(defs.resolve_schedule_def('bulutfon_refresh_schedule').default_status)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == str(
        sorted(
            [
                "call_flow_steps",
                "call_recordings",
                "call_report",
                "cdr_listing",
                "cdrs",
                "extensions",
                "originations",
                "phone_numbers",
                "raw_cdr_details",
                "ring_group_members",
                "ring_groups",
            ]
        )
    )
    assert "cdrs_uuid_unique" in out[1] and "cdrs_complete" in out[1]
    assert out[2].endswith("STOPPED")


@pytest.mark.parametrize("backend", BACKENDS)
def test_materialize_loads_exact_tables_and_second_run_fetches_nothing(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(
        days=3, calls_per_day=40, missing_detail_count=2, malformed_count=5, unknown_field_count=3
    )
    with environment(_env(sim, tmp_path, target)):
        first, last = _days(sim)
        details = _materialize_all(first, last)
        db = target.db
        expected = sim.expected_tables()
        # Each partition of the ranged run carries its own day's counts, from the model.
        # Every call the simulator serves is listed, on its local (Istanbul) day.
        listing_day = {
            c.uuid: c.call_time.astimezone(LOCAL_TZ).date().isoformat() for c in sim.dataset.calls
        }
        loaded = {r["uuid"] for r in expected["cdrs"]}
        rejected = {r["uuid"] for r in expected["load_rejects"]} - loaded
        own = {
            f"default|{day}": {
                "listed": sum(d == day for d in listing_day.values()),
                "loaded": sum(listing_day[u] == day for u in loaded),
                "rejected": sum(listing_day.get(u) == day for u in rejected),
                "pending": 0,
            }
            for day in sorted(set(listing_day.values()))
        }
        assert len(own) == 3 and sum(c["loaded"] for c in own.values()) == len(loaded)
        for asset in ("cdrs", "originations"):
            assert _partition_counts(details, asset) == own
        # Bad records (404s, impossible dates, broken flows, HTML bodies) are rejected,
        # everything else is loaded exactly as the simulator's own model says.
        assert len(expected["load_rejects"]) == 7
        assert_tables_match(db, expected)
        before = table_snapshot(db)
        sim.reset_stats()
        _materialize_all(first, last)
        assert _detail_requests(sim) == 0
        assert table_snapshot(db) == before


def test_seed_v1_and_v2_dialects_load_identical_canonical_tables(
    simulator_factory, tmp_path: Path
) -> None:
    canonical = {
        "cdrs": [
            "uuid",
            "call_type",
            "direction",
            "caller",
            "callee",
            "call_time",
            "answer_time",
            "hangup_time",
            "call_date",
            "answered",
            "ring_seconds",
            "talk_seconds",
            "has_recording",
            "hangup_cause_code",
            "hangup_state_code",
            "missing_call",
        ],
        "call_flow_steps": [
            "cdr_uuid",
            "step_index",
            "callee",
            "start_time",
            "answer_time",
            "hangup_time",
            "redirection_kind",
            "redirection_target",
        ],
        "originations": [
            "cdr_uuid",
            "step_index",
            "attempt_index",
            "destination",
            "start_time",
            "answer_time",
            "hangup_time",
            "outcome",
            "answered",
        ],
    }
    tables = {}
    for dialect in ("seed", "v1", "v2"):
        sim = simulator_factory(days=2, calls_per_day=30, dialect=dialect, seed=11)
        folder = tmp_path / dialect
        folder.mkdir()
        with environment(_env(sim, folder)):
            _materialize_all(*_days(sim))
        tables[dialect] = {
            name: read_table(folder / "warehouse.duckdb", name, columns)
            for name, columns in canonical.items()
        }
    assert tables["seed"]["cdrs"], "nothing loaded"
    assert tables["seed"] == tables["v1"] == tables["v2"]


def test_late_and_new_calls_and_directory_changes_are_picked_up_by_the_next_sync(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    changed_at = dt.datetime(2015, 4, 16, 7, 0, tzinfo=dt.UTC)
    sim = simulator_factory(days=3, calls_per_day=30, clock="2015-04-15T10:00:00+03:00")
    with environment(_env(sim, tmp_path, target)):
        first = run_sync()
        late = sim.add_calls(3, where="late", hours_ago=6)
        new = sim.add_calls(2, where="head")
        # The month's directory changes, seen by the second sync at the simulator's clock.
        sim.update_config(clock=changed_at.isoformat())
        httpx.post(sim.url + "/_admin/directory/change").raise_for_status()
        sim.reset_stats()
        second = run_sync()
        db = target.db
        assert_tables_match(db, sim.expected_tables())
        loaded = {row["uuid"] for row in read_table(db, "cdrs")}
        assert set(late) | set(new) <= loaded
        # Only the five new calls' details were fetched the second time.
        assert _detail_requests(sim) == 5
        # Each sync refreshed the directory (3 lists, 20 + 2 + 2 details), apart from
        # the calls' requests; the second saw the rename and the membership change.
        assert sim.stats()["directory"] == {"200": 27}
        assert [(d.requests, d.writes, d.first_load) for d in first.directory] == [(27, 44, True)]
        assert [(d.requests, d.opened, d.closed) for d in second.directory] == [(27, *[{
            "extensions": 1, "ring_groups": 0, "ring_group_members": 1, "phone_numbers": 0,
        }] * 2)]  # fmt: skip
        begin = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        renamed = [r for r in read_table(db, "extensions") if r["number"] == "1004"]
        assert [(r["valid_from"], r["valid_to"]) for r in renamed] == [
            (begin, changed_at),
            (changed_at, None),
        ]
        assert renamed[1]["caller_name"] == renamed[0]["caller_name"] + " Erdem"
        group_101 = [r for r in read_table(db, "ring_group_members") if r["group_id"] == "11"]
        assert {r["extension_number"] for r in group_101 if r["valid_to"] is None} == {
            *(str(n) for n in range(1001, 1010)),
            "1011",
        }
        assert [(r["extension_number"], r["valid_to"]) for r in group_101 if r["valid_to"]] == [
            ("1010", changed_at)
        ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_arriving_while_the_listing_is_paged_are_not_lost_or_duplicated(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=60, live_calls_per_page=4)
    original = {row["uuid"] for row in sim.expected_tables()["cdrs"]}
    with environment(_env(sim, tmp_path, target, BULUTFON_PAGE_SIZE="15")):
        run_sync()
        db = target.db
        listed = [row["uuid"] for row in read_table(db, "cdr_listing")]
        assert len(listed) == len(set(listed))
        assert original <= set(listed)
        sim.update_config(live_calls_per_page=0)
        run_sync()
        assert_tables_match(db, sim.expected_tables())


def test_a_backfill_of_seven_days_runs_through_dagster(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(days=9, calls_per_day=12)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with environment({**_env(sim, tmp_path, target), "DAGSTER_HOME": str(home)}):
        first, _ = _days(sim)
        start, end = first + dt.timedelta(days=1), first + dt.timedelta(days=7)
        run_sync(start=start, end=end)
        instance = dg.DagsterInstance.get()
        done = instance.get_materialized_partitions(dg.AssetKey("cdrs"))
        instance.dispose()
    want_days = {(start + dt.timedelta(days=i)).isoformat() for i in range(7)}
    # Partitions are account x day: the `default` account's days (no accounts file).
    assert done == {f"default|{day}" for day in want_days}
    loaded_days = {row["call_date"] for row in read_table(target.db, "cdrs")}
    assert {d.isoformat() for d in loaded_days} == want_days
    expected = [r for r in sim.expected_tables()["cdrs"] if start <= r["call_date"] <= end]
    assert len(read_table(target.db, "cdrs")) == len(expected)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bulutfon_pipeline.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        # no credentials at all
        (["sync"], {"BULUTFON_ACCESS_TOKEN": ""}, "no Bulutfon credentials"),
        # a start date that is not a date
        (["sync"], {"BULUTFON_START_DATE": "01/02/2015"}, "BULUTFON_START_DATE"),
        # the warehouse's folder does not exist
        (["sync"], {"BULUTFON_DUCKDB_PATH": "/nonexistent/dir/x.duckdb"}, "does not exist"),
        # a wrong date format on the command line
        (["backfill", "--start", "2015/03/01", "--end", "2015-03-02"], {}, "--start"),
        # the end before the start
        (["backfill", "--start", "2015-03-05", "--end", "2015-03-01"], {}, "before --start"),
        # an unreachable API
        (["sync"], {"BULUTFON_API_URL": "http://127.0.0.1:9"}, "127.0.0.1:9"),
    ],
)
def test_user_errors_give_one_clear_line_and_no_traceback(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    base = {
        "BULUTFON_ACCESS_TOKEN": "not-a-real-token-0123456789",
        "BULUTFON_API_URL": "http://127.0.0.1:9",
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_MAX_RETRIES": "1",
    }
    result = _cli([*args, "--no-progress"] if args[0] == "sync" else args, {**base, **env})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert "not-a-real-token" not in result.stderr + result.stdout


def test_bad_token_is_reported_in_one_line(simulator_factory, tmp_path: Path) -> None:
    sim = simulator_factory(days=1, calls_per_day=5)
    env = _env(sim, tmp_path, BULUTFON_ACCESS_TOKEN="wrong-token-abcdef")
    result = _cli(["sync", "--no-progress"], env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "wrong-token-abcdef" not in result.stderr + result.stdout


def test_a_second_sync_says_it_waits_then_exits_3_after_the_lock_timeout(tmp_path: Path) -> None:
    from bulutfon_pipeline.runner import sync_lock

    db = tmp_path / "w.duckdb"
    env = {
        "BULUTFON_ACCESS_TOKEN": "x" * 20,
        "BULUTFON_DUCKDB_PATH": str(db),
        "BULUTFON_DATA_DIR": str(tmp_path),
        # It waits for the lock this long (default 600 s), saying so in one line first.
        "BULUTFON_LOCK_TIMEOUT_S": "0.2",
    }
    with sync_lock(db):
        result = _cli(["sync", "--no-progress"], env)
    assert result.returncode == 3
    waiting, gave_up = result.stderr.strip().splitlines()
    assert waiting.startswith(f"waiting for another sync (pid {os.getpid()})")
    assert f"another sync (pid {os.getpid()}) is loading" in gave_up
    assert "Traceback" not in result.stderr
