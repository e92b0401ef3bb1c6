"""Daily partitions in the PBX's own calendar (Europe/Istanbul days), and ranged runs."""

from __future__ import annotations

import datetime as dt

import dagster as dg

# Dagster has no public way to start one run over a range of partitions in-process
# (``materialize`` and ``RunRequest`` take a single ``partition_key``), but a run tagged
# with the range's first and last key is what a UI backfill with a single-run policy
# launches. This module is the only place that touches those internal tag names.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from bulutfon_pipeline.settings import LOCAL_TZ_NAME, Settings

#: One partition per local day from BULUTFON_START_DATE; ``end_offset=1`` makes today's
#: (still filling) day available. Definitions must load with any environment, so a bad
#: start date falls back to the default here; the CLI reports it in one line.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=Settings.from_env_or_defaults().start_date.isoformat(),
    timezone=LOCAL_TZ_NAME,
    end_offset=1,
)


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """The run tags that make one run cover the local days ``first..last`` (inclusive)."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }
