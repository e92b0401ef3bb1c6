"""The sensor that starts an account's loads when its listing run succeeded: a real
listing run and the requested loads, executed in-process on an ephemeral instance
against the simulator, whose calls are yesterday's and today's."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from bulutfon_pipeline.definitions import defs
from bulutfon_pipeline.partitions import register_accounts
from bulutfon_pipeline.resources import default_resources
from bulutfon_pipeline.schedules import bulutfon_loads_after_listing_sensor
from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline_tests.helpers import assert_tables_match, environment

SENSOR = "bulutfon_loads_after_listing_sensor"


def _after(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    """The sensor's answer to ``run``'s success, as the daemon would ask it."""
    (record,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    assert record.dagster_event is not None
    context = dg.build_run_status_sensor_context(
        sensor_name=SENSOR,
        dagster_event=record.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
    )
    return bulutfon_loads_after_listing_sensor(context)  # type: ignore[return-value]


def _directory_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The ``extensions`` materialization's metadata values (the directory asset's)."""
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("extensions")
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_successful_listing_run_starts_that_accounts_loads(
    simulator_factory, tmp_path: Path
) -> None:
    today = dt.datetime.now(LOCAL_TZ).date()
    sim = simulator_factory(days=2, calls_per_day=6, dialect="v1", seed=4, end_date=today)
    env = {
        **sim.env(auth="master"),
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_START_DATE": (today - dt.timedelta(days=5)).isoformat(),
    }
    sensor = defs.resolve_sensor_def(SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    instance = dg.DagsterInstance.ephemeral()
    register_accounts(instance, ["default"])
    with environment(env):
        listing = defs.resolve_job_def("bulutfon_listing").execute_in_process(
            instance=instance, partition_key="default", resources=default_resources()
        )
        assert listing.success
        # The listing job loads the directory too, and checks its versions.
        checks = {e.check_name: e.passed for e in listing.get_asset_check_evaluations()}
        assert checks == {
            f"{table}_versions_consistent": True
            for table in ("extensions", "ring_groups", "ring_group_members", "phone_numbers",
                          "phone_number_hours")
        }  # fmt: skip
        # The first refresh wrote the directory and published the analysts' copy; a
        # second one that finds nothing changed writes nothing and leaves the copy be.
        assert "analytics_path" in _directory_metadata(listing)
        again = defs.resolve_job_def("bulutfon_listing").execute_in_process(
            instance=instance, partition_key="default", resources=default_resources()
        )
        unchanged = _directory_metadata(again)
        assert unchanged["extensions_opened"] == unchanged["extensions_closed"] == 0
        assert unchanged["extensions_unchanged"] == 20
        assert "analytics_path" not in unchanged
        request = _after(instance, listing.dagster_run)
        assert isinstance(request, dg.RunRequest)
        yesterday = (today - dt.timedelta(days=1)).isoformat()
        assert request.run_key == f"after-listing-{listing.run_id}"
        assert request.tags["bulutfon/account"] == "default"
        assert request.tags["dagster/asset_partition_range_start"] == f"default|{yesterday}"
        assert request.tags["dagster/asset_partition_range_end"] == f"default|{today}"
        loads = defs.resolve_job_def("bulutfon_refresh").execute_in_process(
            instance=instance, tags=request.tags, resources=default_resources()
        )
        assert loads.success
    # The listing's calls, every one, are loaded by the one run the sensor asked for.
    assert_tables_match(tmp_path / "warehouse.duckdb", sim.expected_tables())

    # A reconcile run's loads cover every day it re-read.
    reconcile = dg.DagsterRun(
        job_name="bulutfon_listing",
        run_id="r" * 8,
        tags={"bulutfon/account": "izmir"},
        run_config={"ops": {"cdr_listing": {"config": {"reconcile_start": "2015-01-20"}}}},
    )
    instance.add_run(reconcile)
    instance.handle_new_event(
        dg.EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id=reconcile.run_id,
            timestamp=0.0,
            dagster_event=dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name="x"
            ),
        )
    )
    request = _after(instance, reconcile)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_start"] == "izmir|2015-01-20"
    assert request.tags["dagster/asset_partition_range_end"] == f"izmir|{today}"
