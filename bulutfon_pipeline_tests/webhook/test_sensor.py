"""The webhook sensor and its job, end to end: the simulator posts its calls' hangups to
a real receiver, the sensor (evaluated as the daemon would, on an in-memory Dagster
instance) requests a run, the run executes in-process, and the tables are compared with
the simulator's ground truth; the listing scan (``run_sync``) reconciles what was lost.

On DuckDB; the reconcile test also on PostgreSQL in ``make test-all`` (``extended``): the
load goes through ``loads.load_details``, tested on both backends by the pipeline's own
tests, and what is new here is which calls it is given, and when.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bulutfon_pipeline.resources import default_resources
from bulutfon_pipeline.runner import run_sync
from bulutfon_pipeline.simulator import SimulatorServer
from bulutfon_pipeline.simulator.model import Call
from bulutfon_pipeline.simulator.webhooks import (
    WebhookSender,
    call_hangup_event,
    call_init_event,
)
from bulutfon_pipeline.webhook import sensor as sensor_module
from bulutfon_pipeline.webhook.config import WebhookConfig
from bulutfon_pipeline.webhook.events import parse_event
from bulutfon_pipeline.webhook.inbox import Inbox
from bulutfon_pipeline.webhook.sensor import (
    BATCH_TAG,
    SENSOR_INTERVAL_S,
    bulutfon_webhook_sensor,
    webhook_load_job,
)
from bulutfon_pipeline.webhook.server import WebhookServer
from bulutfon_pipeline_tests.helpers import (
    WarehouseTarget,
    assert_tables_match,
    environment,
    expected_rows,
    read_table,
)
from bulutfon_pipeline_tests.webhook._support import PASSWORD, USER


@pytest.fixture
def setup(
    simulator_factory: Any, target: WarehouseTarget, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """A v1 simulator (2 days of 10 calls, one whose detail 404s), a receiver writing
    the inbox where the sensor looks for it, the warehouse (``target``) and the
    environment pointing at all three."""
    sim: SimulatorServer = simulator_factory(
        days=2, calls_per_day=10, dialect="v1", seed=5, missing_detail_count=1
    )
    env = {
        **sim.env(auth="master"),
        **target.env,
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_START_DATE": "2015-01-01",
        "BULUTFON_MAX_RETRIES": "1",
        "BULUTFON_WEBHOOK_USER": USER,
        "BULUTFON_WEBHOOK_PASSWORD": PASSWORD,
    }
    with environment(env):
        receiver = WebhookServer(WebhookConfig.from_env()).start()
        try:
            with WebhookSender(receiver.url, user=USER, password=PASSWORD) as sender:
                yield {"sim": sim, "sender": sender, "db": target.db}
        finally:
            receiver.stop()


def _calls(sim: SimulatorServer) -> list[Call]:
    """The served calls, oldest first; the one whose detail 404s last."""
    missing = set(sim.dataset.faults)
    calls = sorted(sim.dataset.calls, key=lambda call: call.call_time)
    return [c for c in calls if c.uuid not in missing] + [c for c in calls if c.uuid in missing]


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[Any, str | None]:
    """One evaluation of the sensor, as the daemon makes it: (its result, new cursor)."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = bulutfon_webhook_sensor(context)
    return result, context.cursor


def _execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.DagsterRunStatus:
    """Run the requested run in-process on ``instance`` (what the daemon would launch)."""
    result = webhook_load_job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        tags=request.tags,
        resources=default_resources(),
        raise_on_error=False,
    )
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    return run.status


def _uuids(request: dg.RunRequest) -> list[str]:
    """The run's calls, all the account ``default``'s (checked)."""
    calls = request.run_config["ops"]["load_pushed_calls"]["config"]["calls"]
    assert list(calls) == ["default"], calls
    return list(calls["default"])


def _expected_for(sim: SimulatorServer, uuids: Sequence[str]) -> dict[str, list[dict]]:
    """The ground truth restricted to ``uuids``."""
    wanted = set(uuids)
    expected = sim.expected_tables()
    return {
        "cdrs": [r for r in expected["cdrs"] if r["uuid"] in wanted],
        "call_flow_steps": [r for r in expected["call_flow_steps"] if r["cdr_uuid"] in wanted],
        "originations": [r for r in expected["originations"] if r["cdr_uuid"] in wanted],
        "load_rejects": [],
    }


def test_the_sensor_loads_new_hangups_and_consumes_them_only_after_a_successful_run(
    setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, sender, db = setup["sim"], setup["sender"], setup["db"]
    calls = _calls(sim)[:-1]  # every detail of these answers
    instance = dg.DagsterInstance.ephemeral()
    for call in calls[:3]:
        sender.post(call_init_event(call)).raise_for_status()  # not a hangup: not loaded
    first = [c.uuid for c in calls[:4]]
    sender.post_calls(calls[:4])

    result, cursor = _tick(instance, None)
    (request,) = result
    assert _uuids(request) == first
    assert request.tags[BATCH_TAG] == request.run_key
    # No run with that key was created (the daemon creates it in the tick that asked):
    # the same calls again, under a new key, since Dagster never launches a key twice.
    (again,), cursor = _tick(instance, cursor)
    assert (again.run_key != request.run_key, _uuids(again)) == (True, first)
    request = again

    # The run fails (the warehouse path is a folder): nothing consumed, retried with the
    # same hangups and those posted since, under a new key.
    monkeypatch.setenv("BULUTFON_DUCKDB_PATH", str(tmp_path))
    assert _execute(instance, request) == dg.DagsterRunStatus.FAILURE
    monkeypatch.setenv("BULUTFON_DUCKDB_PATH", str(db))
    second = [c.uuid for c in calls[4:6]]
    sender.post_calls(calls[4:6])
    result, cursor = _tick(instance, cursor)
    (retry,) = result
    assert retry.run_key != request.run_key
    assert _uuids(retry) == first + second
    assert json.loads(cursor or "")["consumed"] == 0

    # The retry fails too: the next one waits for the interval (doubling after each
    # failure) instead of starting at every tick.
    monkeypatch.setenv("BULUTFON_DUCKDB_PATH", str(tmp_path))
    assert _execute(instance, retry) == dg.DagsterRunStatus.FAILURE
    monkeypatch.setenv("BULUTFON_DUCKDB_PATH", str(db))  # DuckDB: ``target``'s default
    waiting, cursor = _tick(instance, cursor)
    assert isinstance(waiting, dg.SkipReason)
    assert "failed; retrying in" in (waiting.skip_message or "")
    later = time.time() + SENSOR_INTERVAL_S + 1
    monkeypatch.setattr(sensor_module, "_now", lambda: later)
    result, cursor = _tick(instance, cursor)
    (second_retry,) = result
    assert second_retry.run_key not in (request.run_key, retry.run_key)
    assert _uuids(second_retry) == first + second
    retry = second_retry

    # While the run is queued or running, the sensor waits for it.
    queued = instance.create_run_for_job(
        webhook_load_job, run_config=retry.run_config, tags=retry.tags
    )
    waiting, cursor = _tick(instance, cursor)
    assert isinstance(waiting, dg.SkipReason)
    assert f"run {queued.run_id}" in (waiting.skip_message or "")
    sim.reset_stats()
    assert _execute(instance, retry) == dg.DagsterRunStatus.SUCCESS
    assert Counter(sim.stats()["detail_uuids"]) == Counter(first + second)
    assert_tables_match(db, _expected_for(sim, first + second))

    sender.post({"event_type": "call_hangup"})  # refused (400): no uuid
    skipped, cursor = _tick(instance, cursor)
    assert isinstance(skipped, dg.SkipReason)
    assert "no new hangups" in (skipped.skip_message or "")
    assert "1 refused posts in the inbox's rejected_posts" in (skipped.skip_message or "")
    consumed = json.loads(cursor or "")["consumed"]
    assert consumed > 0 and json.loads(cursor or "")["pending"] is None

    # Replayed posts are stored once and request nothing; a run naming loaded calls
    # (e.g. retried after it had committed) fetches nothing and changes nothing.
    before = {t: read_table(db, t) for t in ("cdrs", "call_flow_steps", "originations")}
    sender.post_calls(calls[:6])
    skipped, cursor = _tick(instance, cursor)
    assert isinstance(skipped, dg.SkipReason)
    sim.reset_stats()
    assert _execute(instance, retry) == dg.DagsterRunStatus.SUCCESS
    assert sim.stats().get("detail_uuids", {}) == {}
    assert {t: read_table(db, t) for t in before} == before

    # A new inbox file (seq restarts at 1) is read from the start, not skipped.
    (tmp_path / "webhook_inbox.sqlite3").rename(tmp_path / "old_inbox.sqlite3")
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"webhook_inbox.sqlite3{suffix}").unlink(missing_ok=True)
    with Inbox(tmp_path / "webhook_inbox.sqlite3", create=True) as fresh:
        fresh.store([parse_event(json.dumps(call_hangup_event(calls[6])).encode(), None)])
    (request,), cursor = _tick(instance, cursor)
    assert _uuids(request) == [calls[6].uuid]


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.extended)]
)
def test_lost_posts_and_deferred_details_are_loaded_by_the_next_scan(
    setup: dict[str, Any],
) -> None:
    sim, sender, db = setup["sim"], setup["sender"], setup["db"]
    calls = _calls(sim)
    missing = calls[-1].uuid  # its detail 404s: the webhook run defers it to the scan
    lost = {c.uuid for c in calls[::3]} - {missing}  # posts that never arrived
    posted = sender.post_calls(calls, drop=lost)
    assert missing in posted
    instance = dg.DagsterInstance.ephemeral()
    (request,), _ = _tick(instance, None)
    assert _uuids(request) == posted
    assert _execute(instance, request) == dg.DagsterRunStatus.SUCCESS
    loaded = [uuid for uuid in posted if uuid != missing]
    assert_tables_match(db, _expected_for(sim, loaded))  # no reject for the deferred call

    sim.reset_stats()
    run_sync()  # the scheduled scan: the reconciler
    assert_tables_match(db, sim.expected_tables())
    assert set(sim.stats()["detail_uuids"]) == lost | {missing}  # nothing fetched twice
    assert [r["uuid"] for r in read_table(db, "load_rejects")] == [missing]
    assert len(read_table(db, "cdrs")) == len(expected_rows(sim.expected_tables(), "cdrs"))


def test_each_accounts_posts_load_into_its_own_rows(
    simulator_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two accounts of an accounts file, each PBX posting to its own path: one run loads
    # both, each with its own token (the simulator answers a call's detail only to the
    # account that made it) into its own rows.
    names = ["izmir", "ankara"]
    sim: SimulatorServer = simulator_factory(
        days=1, calls_per_day=6, dialect="v1", seed=8, accounts=names
    )
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        "".join(f'[accounts.{n}]\naccess_token_env = "TOKEN_{n.upper()}"\n' for n in names)
    )
    env = {
        **sim.env(auth="master"),
        "BULUTFON_ACCESS_TOKEN": "",
        "BULUTFON_ACCOUNTS_FILE": str(accounts_file),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "BULUTFON_START_DATE": "2015-01-01",
        **{f"TOKEN_{n.upper()}": sim.env(account=n)["BULUTFON_ACCESS_TOKEN"] for n in names},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls = {n: sorted(sim.account(n).dataset.calls, key=lambda c: c.call_time) for n in names}
    receiver = WebhookServer(WebhookConfig.from_env()).start()
    try:
        for name in names:
            with WebhookSender(f"{receiver.url}/{name}") as sender:
                sender.post_calls(calls[name])
        with WebhookSender(receiver.url) as sender:  # the bare path: no account 'default'
            refused = sender.post(call_hangup_event(calls["izmir"][0]))
    finally:
        receiver.stop()
    assert refused.status_code == 404
    assert "post to /webhook/izmir, /webhook/ankara" in refused.json()["error"]

    instance = dg.DagsterInstance.ephemeral()
    (request,), _ = _tick(instance, None)
    assert request.run_config["ops"]["load_pushed_calls"]["config"]["calls"] == {
        n: [c.uuid for c in calls[n]] for n in names
    }
    assert _execute(instance, request) == dg.DagsterRunStatus.SUCCESS
    db = tmp_path / "w.duckdb"
    for name in names:
        assert_tables_match(db, sim.expected_tables(name), account=name)
        assert Counter(sim.stats(account=name)["detail_uuids"]) == Counter(
            c.uuid for c in calls[name]
        )
