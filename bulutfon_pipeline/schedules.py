"""The jobs and their schedules: every 15 minutes each account's listing (and its
directory: extensions, ring groups, numbers), and its
yesterday's and today's details (and recordings); weekly, each account's reconcile of the
last 90 days. The sensor ``bulutfon_loads_after_listing_sensor`` (stopped by default)
starts an account's loads as soon as its listing run succeeded, instead of at the next
tick.

The listing is partitioned by account and the detail loads by account x day, and Dagster
keeps assets of different partitions out of one job: the listing and the loads are two
jobs, each with its schedule, one run per account (tagged ``bulutfon/account``, which the
run queue limits to one run per account at a time, in the order they were queued).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from bulutfon_pipeline.assets._common import GROUP
from bulutfon_pipeline.assets.listing import reconcile_config
from bulutfon_pipeline.directory import DIRECTORY_ASSETS
from bulutfon_pipeline.partitions import ACCOUNT_TAG, range_tags, run_account
from bulutfon_pipeline.settings import LOCAL_TZ, LOCAL_TZ_NAME, RECONCILE_DAYS, Settings

# Read when the code location loads: which assets the job selects and when it runs cannot
# change per run. A malformed environment falls back to the defaults here, and the CLI
# reports it in one line.
_SETTINGS = Settings.from_env_or_defaults()


def _refresh_selection(settings: Settings) -> dg.AssetSelection:
    # Recordings are personal data: the schedule downloads them only when
    # BULUTFON_DOWNLOAD_RECORDINGS is on.
    selection: dg.AssetSelection = dg.AssetSelection.groups(GROUP) - dg.AssetSelection.assets(
        "cdr_listing", *DIRECTORY_ASSETS
    )
    if not settings.download_recordings:
        selection = selection - dg.AssetSelection.assets("call_recordings")
    return selection


listing_job = dg.define_asset_job(
    "bulutfon_listing",
    selection=dg.AssetSelection.assets("cdr_listing", *DIRECTORY_ASSETS),
    description="Scan an account's listing back to known data (or reconcile a range), and "
    "refresh its directory.",
)

refresh_job = dg.define_asset_job(
    "bulutfon_refresh",
    selection=_refresh_selection(_SETTINGS),
    description="Load the details (and recordings) of an account's given days.",
)


def _account_names(context: dg.ScheduleEvaluationContext) -> list[str]:
    """The accounts registered as partitions (``bulutfon_accounts_sensor``)."""
    from bulutfon_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME

    if context.instance_ref is None:  # a test's context without an instance
        from bulutfon_pipeline.accounts import load_accounts

        return [account.name for account in load_accounts()]
    return list(context.instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))


@dg.schedule(
    job=listing_job,
    cron_schedule=_SETTINGS.schedule_cron,
    execution_timezone=LOCAL_TZ_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def bulutfon_listing_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Every 15 minutes (BULUTFON_SCHEDULE_CRON): each account's listing."""
    return [
        dg.RunRequest(partition_key=name, tags={ACCOUNT_TAG: name, "bulutfon/trigger": "schedule"})
        for name in _account_names(context)
    ]


@dg.schedule(
    job=refresh_job,
    cron_schedule=_SETTINGS.schedule_cron,
    execution_timezone=LOCAL_TZ_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def bulutfon_refresh_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Every 15 minutes (BULUTFON_SCHEDULE_CRON): each account's yesterday and today."""
    today = context.scheduled_execution_time.astimezone(LOCAL_TZ).date()
    yesterday = today - dt.timedelta(days=1)
    return [
        dg.RunRequest(
            run_key=None,
            tags={**range_tags(yesterday, today, name), "bulutfon/trigger": "schedule"},
        )
        for name in _account_names(context)
    ]


@dg.schedule(
    job=listing_job,
    cron_schedule=_SETTINGS.reconcile_cron,
    execution_timezone=LOCAL_TZ_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def bulutfon_reconcile_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Weekly (BULUTFON_RECONCILE_CRON): re-read each account's listing of the last 90
    days and mark the calls that changed at the source (the next refresh or `sync` loads
    them)."""
    today = context.scheduled_execution_time.astimezone(LOCAL_TZ).date()
    first = today - dt.timedelta(days=RECONCILE_DAYS - 1)
    return [
        dg.RunRequest(
            run_key=None,
            partition_key=name,
            run_config=reconcile_config(first, today),
            tags={ACCOUNT_TAG: name, "bulutfon/trigger": "reconcile-schedule"},
        )
        for name in _account_names(context)
    ]


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[listing_job],
    request_job=refresh_job,
    name="bulutfon_loads_after_listing_sensor",
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "When an account's listing run succeeds, load that account's new calls at once: "
        "yesterday and today, or every day a reconcile re-read (its changed calls)."
    ),
)
def bulutfon_loads_after_listing_sensor(
    context: dg.RunStatusSensorContext,
) -> dg.RunRequest | dg.SkipReason:
    """The loads of the account whose listing just succeeded (see the module)."""
    run = context.dagster_run
    account = run_account(dict(run.tags))
    if not account:
        return dg.SkipReason(f"run {run.run_id} names no account")
    today = dt.datetime.now(LOCAL_TZ).date()
    first = today - dt.timedelta(days=1)
    run_config: dict[str, Any] = dict(run.run_config or {})
    config = run_config.get("ops", {}).get("cdr_listing", {}).get("config", {})
    if config.get("reconcile_start"):
        first = min(first, dt.date.fromisoformat(config["reconcile_start"]))
    return dg.RunRequest(
        run_key=f"after-listing-{run.run_id}",
        tags={**range_tags(first, today, account), "bulutfon/trigger": "after-listing"},
    )
