"""The refresh job and its schedule (the listing plus today's and yesterday's partitions),
and the weekly reconcile of the last 90 days."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from bulutfon_pipeline.reconcile import listing_config
from bulutfon_pipeline.recordings import downloads_enabled
from bulutfon_pipeline.settings import (
    DEFAULT_RECONCILE_CRON,
    DEFAULT_SCHEDULE_CRON,
    LOCAL_TZ,
    LOCAL_TZ_NAME,
    RECONCILE_DAYS,
)


def _refresh_selection() -> dg.AssetSelection:
    # Recordings are personal data: the schedule downloads them only when
    # BULUTFON_DOWNLOAD_RECORDINGS is on (read when the code location loads).
    selection: dg.AssetSelection = dg.AssetSelection.groups("bulutfon")
    if not downloads_enabled():
        selection = selection - dg.AssetSelection.assets("call_recordings")
    return selection


refresh_job = dg.define_asset_job(
    "bulutfon_refresh",
    selection=_refresh_selection(),
    description="Scan the listing, then load the details (and recordings) of the given days.",
)


def _range_tags(today: dt.date, days: int = 2) -> dict[str, str]:
    first = today - dt.timedelta(days=days - 1)
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: today.isoformat(),
    }


@dg.schedule(
    job=refresh_job,
    cron_schedule=os.environ.get("BULUTFON_SCHEDULE_CRON") or DEFAULT_SCHEDULE_CRON,
    execution_timezone=LOCAL_TZ_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def bulutfon_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every 15 minutes (BULUTFON_SCHEDULE_CRON): the listing, yesterday and today."""
    today = context.scheduled_execution_time.astimezone(LOCAL_TZ).date()
    return dg.RunRequest(run_key=None, tags={**_range_tags(today), "bulutfon/trigger": "schedule"})


@dg.schedule(
    job=refresh_job,
    cron_schedule=os.environ.get("BULUTFON_RECONCILE_CRON") or DEFAULT_RECONCILE_CRON,
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
        run_config=listing_config(first, today),
        tags={**_range_tags(today, RECONCILE_DAYS), "bulutfon/trigger": "reconcile-schedule"},
    )
