"""Daily partitions in the PBX's own calendar (Europe/Istanbul days)."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from bulutfon_pipeline.settings import DEFAULT_START_DATE, LOCAL_TZ_NAME


def start_date_from_env(env: dict[str, str] | None = None) -> dt.date:
    """The first partition: ``BULUTFON_START_DATE`` (YYYY-MM-DD) or 2015-01-01.

    Raises:
        ValueError: with a one-line message when the variable is not a date.
    """
    raw = (env if env is not None else os.environ).get("BULUTFON_START_DATE", "").strip()
    if not raw:
        return DEFAULT_START_DATE
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"BULUTFON_START_DATE={raw!r} is not a date; use YYYY-MM-DD, e.g. 2015-01-01"
        ) from None


def _partitions_start() -> str:
    try:
        return start_date_from_env().isoformat()
    except ValueError:
        # Definitions must load even with a bad environment; the CLI reports the error.
        return DEFAULT_START_DATE.isoformat()


#: One partition per local day; ``end_offset=1`` makes today's (still filling) day available.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_partitions_start(), timezone=LOCAL_TZ_NAME, end_offset=1
)
