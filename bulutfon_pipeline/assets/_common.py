"""What the assets share: their group, the partition window, the refetch tag, API counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from bulutfon_pipeline.resources import SettingsResource
from bulutfon_pipeline.settings import Settings, analytics_path_for
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.publish import publish_analytics

#: The asset group of the loads (the refresh job selects it).
GROUP = "bulutfon"
#: A run tag that makes any run (a UI backfill included) fetch loaded calls again.
REFETCH_TAG = "bulutfon/refetch"
#: A run tag: ``deferred`` makes the writing assets skip publishing the analysts' copy
#: (``sync`` and ``backfill`` publish once, after their last run).
PUBLISH_TAG = "bulutfon/publish"
PUBLISH_DEFERRED = "deferred"
_ON_DUCKDB = Settings.from_env_or_defaults().warehouse_url is None
#: The concurrency pool of the writing assets: ``duckdb`` on a DuckDB warehouse (one
#: writer process at a time; `bulutfon-pipeline ui` limits the pool to 1), none on
#: PostgreSQL, where partitions load concurrently. Read when the definitions load.
WRITER_POOL: str | None = "duckdb" if _ON_DUCKDB else None
#: The warehouse's kind, as the UI shows it on the writing assets (their ``kinds``).
WAREHOUSE_KIND = "duckdb" if _ON_DUCKDB else "postgres"
#: The most days one run of a UI or daemon backfill covers (the partitioned assets'
#: backfill policy). DuckDB: 31, few runs, which take turns on the file anyway.
#: PostgreSQL: 3, so that a backfill of a week or two becomes several runs that the run
#: queue (3 at once in the shipped dagster.yaml) loads at the same time.
DAYS_PER_BACKFILL_RUN = 31 if _ON_DUCKDB else 3
#: That policy, for ``backfill_policy=``.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_BACKFILL_RUN)
#: Metadata keys of the API client's counters start with this.
_API_PREFIX = "api_"


def partition_days(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The first and last local day (inclusive) of a run's partition window."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def refetch_requested(context: dg.AssetExecutionContext, configured: bool) -> bool:
    """The run's config asks for a refetch, or the run carries ``REFETCH_TAG=true``."""
    return configured or context.run.tags.get(REFETCH_TAG, "").lower() == "true"


def api_metadata(stats: Mapping[str, int]) -> dict[str, int]:
    """The client's counters as metadata (``api_requests``, ``api_retries``…)."""
    return {f"{_API_PREFIX}{name}": value for name, value in stats.items()}


def api_counts(metadata: Mapping[str, Any]) -> dict[str, int]:
    """The client's counters back from :func:`api_metadata`'s keys."""
    return {
        key[len(_API_PREFIX) :]: int(value)
        for key, value in metadata.items()
        if key.startswith(_API_PREFIX)
    }


def publish_after_load(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: SettingsResource
) -> dict[str, Any]:
    """Publish the analysts' copy of a DuckDB warehouse after a committed load (unless
    the run defers it, see ``PUBLISH_TAG``); its metadata, or none."""
    if context.run.tags.get(PUBLISH_TAG) == PUBLISH_DEFERRED or warehouse.is_server:
        return {}  # a server warehouse has no copy: its readers never block a load
    configured = settings.analytics_path
    target = Path(configured) if configured else analytics_path_for(warehouse.path)
    published = publish_analytics(warehouse, target)
    context.log.info("analysts' copy published to %s in %.2f s", target, published.seconds)
    return published.to_metadata()
