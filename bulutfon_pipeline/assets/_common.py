"""What the assets share: their group, the partition window and its accounts, the refetch
tag, API counts, and running one piece of work per account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from bulutfon_pipeline.accounts import Account, find_account
from bulutfon_pipeline.partitions import accounts_of
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


def run_accounts(context: dg.AssetExecutionContext) -> list[str]:
    """The PBX accounts of a run's partitions: one for a partition or a ranged run of one
    account's days (a UI backfill groups by account), several for a ranged run of one day
    across accounts."""
    if context.has_partition_key and "|" not in context.partition_key:
        return [context.partition_key]  # the listing: partitioned by account alone
    return accounts_of(context.partition_keys)


T = TypeVar("T")


def per_account(
    context: dg.AssetExecutionContext, names: list[str], work: Callable[[Account], T]
) -> Iterator[tuple[str, T]]:
    """``work`` for each account of ``names`` in turn. One account: its error as it is.
    Several: an account that fails does not stop the others; the step then fails with one
    line per failed account, naming it."""
    if len(names) == 1:
        yield names[0], work(find_account(names[0]))
        return
    failures: list[str] = []
    for name in names:
        try:
            yield name, work(find_account(name))
        except Exception as error:
            context.log.error("account %r failed: %s", name, error)
            failures.append(f"account {name!r}: {error}")
    if failures:
        raise dg.Failure(description="; ".join(failures))


def summed(metadata: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata of several accounts' loads as one: numbers summed, the rest the
    first's."""
    if len(metadata) == 1:
        return metadata[0]
    total: dict[str, Any] = {}
    for meta in metadata:
        for key, value in meta.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and isinstance(total.get(key), int | float):
                total[key] = total[key] + value
            else:
                total.setdefault(key, value)
    return total


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
