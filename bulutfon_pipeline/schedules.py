"""The refresh job and its schedule (the listing plus today's and yesterday's partitions),
and the weekly reconcile of the last 90 days."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from bulutfon_pipeline.assets._common import GROUP
from bulutfon_pipeline.assets.listing import reconcile_config
from bulutfon_pipeline.partitions import range_tags
from bulutfon_pipeline.settings import LOCAL_TZ, LOCAL_TZ_NAME, RECONCILE_DAYS, Settings

# Read when the code location loads: which assets the job selects and when it runs cannot
# change per run. A malformed environment falls back to the defaults here, and the CLI
# reports it in one line.
_SETTINGS = Settings.from_env_or_defaults()


def _refresh_selection(settings: Settings) -> dg.AssetSelection:
    # Recordings are personal data: the schedule downloads them only when
    # BULUTFON_DOWNLOAD_RECORDINGS is on.
    selection: dg.AssetSelection = dg.AssetSelection.groups(GROUP)
    if not settings.download_recordings:
        selection = selection - dg.AssetSelection.assets("call_recordings")
    return selection


refresh_job = dg.define_asset_job(
    "bulutfon_refresh",
    selection=_refresh_selection(_SETTINGS),
    description="Scan the listing, then load the details (and recordings) of the given days.",
)


@dg.schedule(
    job=refresh_job,
    cron_schedule=_SETTINGS.schedule_cron,
    execution_timezone=LOCAL_TZ_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def bulutfon_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every 15 minutes (BULUTFON_SCHEDULE_CRON): the listing, yesterday and today."""
    today = context.scheduled_execution_time.astimezone(LOCAL_TZ).date()
    yesterday = today - dt.timedelta(days=1)
    return dg.RunRequest(
        run_key=None, tags={**range_tags(yesterday, today), "bulutfon/trigger": "schedule"}
    )


@dg.schedule(
    job=refresh_job,
    cron_schedule=_SETTINGS.reconcile_cron,
    execution_timezone=LOCAL_TZ_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def bulutfon_reconcile_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Weekly (BULUTFON_RECONCILE_CRON): re-read the listing of the last 90 days and load
    the calls that changed at the source."""
    today = context.scheduled_execution_time.astimezone(LOCAL_TZ).date()
    first = today - dt.timedelta(days=RECONCILE_DAYS - 1)
    return dg.RunRequest(
        run_key=None,
        run_config=reconcile_config(first, today),
        tags={**range_tags(first, today), "bulutfon/trigger": "reconcile-schedule"},
    )
