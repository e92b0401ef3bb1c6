"""Calls that change at the source after they were loaded: sync and reconcile follow them.

Each test syncs a simulator, changes calls through its admin endpoint (as the PBX does
after the fact), syncs or reconciles again, and compares every table with the simulator's
ground truth, the ``cdr_changes`` rows with what was changed, and the detail requests
with exactly the calls that changed.

``target`` is the warehouse (a DuckDB file, or a PostgreSQL database for the tests
parametrized with ``backend``). On both: every kind of change (recordings included) and
the reconcile. DuckDB only, to keep the suite's time: k changes (the first test's path
with fewer kinds), mirroring off (the first test with one flag turned) and the reconcile
command (the reconcile's path, plus its output and argument errors).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bulutfon_pipeline.cli import main
from bulutfon_pipeline.runner import run_reconcile, run_sync
from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.warehouse.change_log import ChangeRow
from bulutfon_pipeline_tests.helpers import (
    BACKENDS,
    Database,
    WarehouseTarget,
    assert_tables_match,
    environment,
    read_table,
)

LOOKBACK = dt.timedelta(hours=48)


def _env(
    sim, tmp_path: Path, target: WarehouseTarget | None = None, **extra: str
) -> dict[str, str]:
    where = target.env if target else {"BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb")}
    return {
        **sim.env(auth="master"),
        **where,
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_START_DATE": "2015-01-01",
        "BULUTFON_MAX_RETRIES": "2",
        **extra,
    }


def _detail_uuids(sim) -> Counter[str]:
    return Counter(sim.stats().get("detail_uuids", {}))


def _requests(sim, endpoint: str) -> int:
    return sum(int(n) for n in sim.stats().get(endpoint, {}).values())


def _iso(instant: dt.datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _price(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def _expected(sim, kept: frozenset[str] = frozenset()) -> dict[str, list[dict[str, Any]]]:
    """The ground truth, plus the ``recording`` reject the recordings asset writes for
    every call whose recording is REMOVED (it has nothing to download), bar ``kept``
    calls whose copy is kept (their file is still there to skip)."""
    expected = sim.expected_tables()
    removed = [
        c.uuid for c in sim.dataset.calls if c.call_record == "REMOVED" and c.uuid not in kept
    ]
    expected["load_rejects"] += [{"uuid": uuid, "stage": "recording"} for uuid in removed]
    return expected


def _changes(db: Database) -> set[tuple[str, str, str | None, str | None]]:
    return {
        (r["uuid"], r["field"], r["old_value"], r["new_value"])
        for r in read_table(db, "cdr_changes")
    }


def _recent(sim, within: dt.timedelta) -> list[Any]:
    calls = sim.dataset.calls
    newest = calls[0].call_time
    return [c for c in calls if c.call_time >= newest - within]


def _pick(calls: list[Any], taken: set[str], test: Any) -> Any:
    call = next(c for c in calls if c.uuid not in taken and test(c))
    taken.add(call.uuid)
    return call


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_kind_of_change_is_followed_exactly_with_k_detail_requests(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(days=3, calls_per_day=30, dialect="v1", seed=11, recording_share=0.5)
    db = target.db
    with environment(_env(sim, tmp_path, target, BULUTFON_DOWNLOAD_RECORDINGS="1")):
        run_sync()
        assert_tables_match(db, _expected(sim))
        # A sync with nothing changed at the source fetches no detail and audits nothing.
        sim.reset_stats()
        run_sync()
        assert _requests(sim, "detail") == 0
        assert read_table(db, "cdr_changes") == []

        recent = _recent(sim, LOOKBACK / 2)
        taken: set[str] = set()
        removed = _pick(recent, taken, lambda c: c.call_record == "YES")
        unpriced = _pick(recent, taken, lambda c: c.call_price is None)
        priced = _pick(recent, taken, lambda c: c.call_price is not None)
        late = _pick(recent, taken, lambda c: c.hangup_time is not None and c.answered)
        recordings = {r["cdr_uuid"]: r["path"] for r in read_table(db, "call_recordings")}
        path = recordings[removed.uuid]
        assert (tmp_path / path).is_file()
        new_hangup = late.hangup_time + dt.timedelta(minutes=2)
        sim.change_call(removed.uuid, call_record="REMOVED")
        sim.change_call(unpriced.uuid, call_price="0.0500")
        sim.change_call(priced.uuid, call_price="0.9999")
        sim.change_call(late.uuid, hangup_time=new_hangup)

        sim.reset_stats()
        run_sync()
        # Exactly the four changed calls' details were fetched, once each.
        assert _detail_uuids(sim) == Counter(taken)
        assert_tables_match(db, _expected(sim))
        assert _changes(db) == {
            (removed.uuid, "call_record", "YES", "REMOVED"),
            (removed.uuid, "recording_file", path, None),
            (unpriced.uuid, "call_price", None, "0.0500"),
            (priced.uuid, "call_price", _price(priced.call_price), "0.9999"),
            (late.uuid, "hangup_time", _iso(late.hangup_time), _iso(new_hangup)),
        }
        rows = read_table(db, "cdr_changes")
        local_days = {c.uuid: c.call_time.astimezone(LOCAL_TZ).date() for c in sim.dataset.calls}
        assert all(r["call_date"] == local_days[r["uuid"]] for r in rows)
        assert all(r["detected_at"] is not None and r["seen_at"] >= r["detected_at"] for r in rows)
        # The removed recording is gone from disk and from call_recordings; the rest stay.
        assert not (tmp_path / path).exists()
        left = {r["cdr_uuid"] for r in read_table(db, "call_recordings")}
        assert left == set(recordings) - {removed.uuid}
        assert all((tmp_path / recordings[u]).is_file() for u in left)
        assert read_table(db, "_cdr_refetch") == []

        # Once followed, the next sync is a no-op again.
        sim.reset_stats()
        run_sync()
        assert _requests(sim, "detail") == 0
        assert len(read_table(db, "cdr_changes")) == 5


@pytest.mark.parametrize("dialect", ["seed", "v1", "v2"])
def test_k_changed_calls_cost_exactly_k_detail_requests(
    dialect: str, simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(days=3, calls_per_day=30, dialect=dialect, seed=5)
    db = target.db
    with environment(_env(sim, tmp_path, target)):
        run_sync()
        recent = [c for c in _recent(sim, LOOKBACK / 2) if c.answered and c.hangup_time]
        changed = recent[:3]
        for call in changed:
            # A corrected end, which both dialects carry in the listing.
            sim.change_call(call.uuid, hangup_time=call.hangup_time + dt.timedelta(minutes=1))
        sim.reset_stats()
        run_sync()
        assert _detail_uuids(sim) == Counter(c.uuid for c in changed)
        assert_tables_match(db, sim.expected_tables())
        assert {(u, f) for u, f, _, _ in _changes(db)} == {(c.uuid, "hangup_time") for c in changed}


def test_mirroring_off_keeps_the_recording_and_still_audits_the_change(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=30, dialect="v1", seed=7, recording_share=0.5)
    db = target.db
    env = _env(sim, tmp_path, target, BULUTFON_DOWNLOAD_RECORDINGS="1",
               BULUTFON_MIRROR_RECORDING_DELETES="0")  # fmt: skip
    with environment(env):
        run_sync()
        call = next(c for c in _recent(sim, LOOKBACK / 2) if c.call_record == "YES")
        before = {r["cdr_uuid"]: r for r in read_table(db, "call_recordings")}
        sim.change_call(call.uuid, call_record="REMOVED")
        run_sync()
        assert_tables_match(db, _expected(sim, kept=frozenset([call.uuid])))
        assert _changes(db) == {(call.uuid, "call_record", "YES", "REMOVED")}
        after = {r["cdr_uuid"]: r for r in read_table(db, "call_recordings")}
        assert after == before
        assert (tmp_path / before[call.uuid]["path"]).is_file()


@pytest.mark.parametrize("backend", BACKENDS)
def test_reconcile_follows_changes_older_than_the_lookback(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(days=5, calls_per_day=20, dialect="v1", seed=9)
    db = target.db
    # Small pages, so a sync's scan stops well before the changed calls.
    with environment(_env(sim, tmp_path, target, BULUTFON_PAGE_SIZE="10")):
        run_sync()
        calls = sim.dataset.calls
        newest = calls[0].call_time
        old = [c for c in calls if c.call_time < newest - LOOKBACK - dt.timedelta(hours=24)]
        priced = next(c for c in old if c.call_price is not None)
        answered = next(c for c in old if c.answered and c.uuid != priced.uuid)
        new_answer = answered.answer_time + dt.timedelta(minutes=1)
        sim.change_call(priced.uuid, call_price="1.2345")
        sim.change_call(answered.uuid, answer_time=new_answer)
        # Beyond the lookback a sync does not see them (and pays nothing for it).
        sim.reset_stats()
        run_sync()
        assert _requests(sim, "detail") == 0
        assert read_table(db, "cdr_changes") == []

        first = min(c.call_time for c in old).astimezone(LOCAL_TZ).date()
        last = newest.astimezone(LOCAL_TZ).date()
        sim.reset_stats()
        outcome = run_reconcile(first, last)
        assert _detail_uuids(sim) == Counter([priced.uuid, answered.uuid])
        assert outcome.sync.detail_total("fetched") == 2
        assert outcome.sync.listing is not None and outcome.sync.listing.changed == 2
        assert outcome.sync.listing.pages == _requests(sim, "listing")
        assert_tables_match(db, sim.expected_tables())
        day = {c.uuid: c.call_time.astimezone(LOCAL_TZ).date() for c in (priced, answered)}
        want = {
            ChangeRow(priced.uuid, day[priced.uuid], "call_price",
                      _price(priced.call_price), "1.2345", "default"),
            ChangeRow(answered.uuid, day[answered.uuid], "answer_time",
                      _iso(answered.answer_time), _iso(new_answer), "default"),
        }  # fmt: skip
        assert set(outcome.changes) == want
        assert len(outcome.changes) == 2

        # A second reconcile finds nothing: listing requests only.
        sim.reset_stats()
        again = run_reconcile(first, last)
        assert _requests(sim, "detail") == 0 and again.changes == []


def test_the_reconcile_command_prints_the_changes_and_rejects_bad_arguments(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    sim = simulator_factory(days=4, calls_per_day=15, dialect="v1", seed=13)
    runner = CliRunner()
    with environment(_env(sim, tmp_path, target, BULUTFON_PAGE_SIZE="10")):
        run_sync()
        calls = sim.dataset.calls
        old = calls[-1]
        sim.change_call(old.uuid, call_price="2.5000")
        first = old.call_time.astimezone(LOCAL_TZ).date()
        result = runner.invoke(
            main, ["reconcile", "--start", first.isoformat(), "--no-progress"], env=None
        )
        assert result.exit_code == 0, result.output
        assert old.uuid in result.output and "2.5000" in result.output
        assert "1 calls changed, 1 details fetched, 1 changes" in result.output

        for args, message in [
            (["--start", "2015-02-10", "--end", "2015-02-01"], "before --start"),
            (["--start", "2999-01-01"], "in the future"),
            (["--start", "2014-12-31"], "before BULUTFON_START_DATE"),
            (["--start", "10-02-2015"], "Invalid value for '--start'"),
        ]:
            bad = runner.invoke(main, ["reconcile", *args, "--no-progress"])
            assert bad.exit_code == 2, (args, bad.output)
            assert message in bad.output, (args, bad.output)
        with environment({"BULUTFON_MIRROR_RECORDING_DELETES": "sometimes"}):
            bad = runner.invoke(main, ["reconcile", "--start", first.isoformat()])
        assert bad.exit_code == 2, bad.output
        assert "BULUTFON_MIRROR_RECORDING_DELETES='sometimes' must be" in bad.output


def test_the_weekly_reconcile_schedule_is_stopped_and_asks_for_90_days() -> None:
    import dagster as dg

    from bulutfon_pipeline.definitions import defs
    from bulutfon_pipeline.partitions import register_accounts
    from bulutfon_pipeline.schedules import bulutfon_reconcile_schedule

    schedule = defs.resolve_schedule_def("bulutfon_reconcile_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "30 3 * * 0"
    when = dt.datetime(2015, 4, 19, 3, 30, tzinfo=LOCAL_TZ)
    instance = dg.DagsterInstance.ephemeral()
    register_accounts(instance, ["default"])  # what bulutfon_accounts_sensor does
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    (request,) = bulutfon_reconcile_schedule(context)
    # One listing run of the `default` account (no accounts file), which re-reads the
    # listing back 90 days and marks the changed calls for the next load.
    assert request.partition_key == "default"
    assert request.tags["bulutfon/account"] == "default"
    config = request.run_config["ops"]["cdr_listing"]["config"]
    assert config == {"reconcile_start": "2015-01-20", "reconcile_end": "2015-04-19"}
    # The job accepts that config as it is (resources read a token from the environment).
    job = defs.resolve_job_def(schedule.job_name)
    with environment({"BULUTFON_ACCESS_TOKEN": "not-a-real-token"}):
        assert dg.validate_run_config(job, request.run_config)
