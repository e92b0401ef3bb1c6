"""The account x day partitioned detail load: ``cdrs`` and the tables normalized from
each call."""

import datetime as dt
from typing import Any

import dagster as dg

from bulutfon_pipeline import checks
from bulutfon_pipeline.accounts import Account
from bulutfon_pipeline.assets._common import (
    BACKFILL_POLICY,
    GROUP,
    WAREHOUSE_KIND,
    WRITER_POOL,
    api_metadata,
    partition_days,
    per_account,
    publish_after_load,
    refetch_requested,
    run_accounts,
    summed,
)
from bulutfon_pipeline.loads import DetailLoadSummary, load_details
from bulutfon_pipeline.partitions import account_day_partitions, split_key
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource
from bulutfon_pipeline.warehouse import Warehouse


class DetailsConfig(dg.Config):
    """Run configuration of the detail load."""

    refetch: bool = False
    """Fetch every listed call of the range again, not only the ones not loaded yet."""


SPECS = [
    dg.AssetSpec(
        "cdrs",
        deps=["cdr_listing"],
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="One row per call with its detail, normalized to the canonical vocabulary.",
    ),
    dg.AssetSpec(
        "raw_cdr_details",
        deps=["cdr_listing"],
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="Each call's detail payload exactly as received, for replays.",
    ),
    dg.AssetSpec(
        "call_flow_steps",
        deps=["cdrs"],
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="The ordered steps of each call through menus, groups and extensions.",
    ),
    dg.AssetSpec(
        "originations",
        deps=["call_flow_steps"],
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="Every phone a ring group rang for a call, and who answered.",
    ),
]


@dg.multi_asset(
    name="cdr_details",
    specs=SPECS,
    check_specs=checks.CHECK_SPECS,
    partitions_def=account_day_partitions,
    # A backfill of a long range becomes runs of up to 31 partitions each on DuckDB (few
    # runs, each writing in short transactions, serialized on the file by the pool), of up
    # to 3 on PostgreSQL (several runs that load at the same time). Dagster cuts a backfill
    # of account x day partitions into ranges of one account's days (or of one day's
    # accounts, when there are fewer days than accounts), then into runs of that size.
    backfill_policy=BACKFILL_POLICY,
    pool=WRITER_POOL,
)
def cdr_details(
    context: dg.AssetExecutionContext,
    config: DetailsConfig,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
):
    """Fetch each listed call's detail for the partition's days and load the call tables."""
    start, end = partition_days(context)
    knobs = settings.get()
    refetch = refetch_requested(context, config.refetch)
    loaded: list[Warehouse] = []

    def load(account: Account) -> tuple[DetailLoadSummary, dict[str, int]]:
        wh = warehouse.warehouse(account.name)
        with bulutfon.client(account) as client:
            summary = load_details(
                client,
                wh,
                start=start,
                end=end,
                refetch=refetch,
                batch_size=knobs.detail_batch_size,
                mirror_recording_deletes=knobs.data_dir if knobs.mirror_recording_deletes else None,
            )
            stats = client.stats.as_dict()
        loaded.append(wh)
        context.log.info(
            "details of %s %s..%s: %d listed, %d pending, %d fetched, %d new, %d updated, "
            "%d rejected",
            account.name,
            start,
            end,
            summary.listed,
            summary.pending,
            summary.fetched,
            summary.new,
            summary.updated,
            summary.rejected,
        )
        return summary, stats

    done = list(per_account(context, run_accounts(context), load))
    published = publish_after_load(context, loaded[0], settings)
    common: dict[str, Any] = {
        **summed([{**s.to_metadata(), **api_metadata(stats)} for _, (s, stats) in done]),
        **published,
    }
    if len(done) > 1:
        common["accounts"] = [name for name, _ in done]
    previews = [s.preview for _, (s, _stats) in done if s.preview is not None]
    preview = previews[0].to_markdown(index=False) if previews else "_no new calls in this range_"
    flow_steps = sum(s.flow_steps for _, (s, _stats) in done)
    originations = sum(s.originations for _, (s, _stats) in done)
    _partition_counts(context, loaded, start, end)
    yield dg.MaterializeResult(
        asset_key="cdrs", metadata={**common, "preview": dg.MetadataValue.md(preview)}
    )
    yield dg.MaterializeResult(asset_key="raw_cdr_details", metadata=common)
    yield dg.MaterializeResult(
        asset_key="call_flow_steps", metadata={**common, "rows_written": flow_steps}
    )
    yield dg.MaterializeResult(
        asset_key="originations", metadata={**common, "rows_written": originations}
    )
    yield from checks.evaluate(
        loaded, lookback=knobs.lookback, reject_rate_warn=knobs.reject_rate_warn
    )


def _partition_counts(
    context: dg.AssetExecutionContext, loaded: list[Warehouse], start: dt.date, end: dt.date
) -> None:
    """In a ranged run, each partition's own counts after the load (its day's listed,
    loaded, rejected and pending calls), as ``partition_*`` metadata of that partition's
    materializations; the run's counts stay those of the whole range. A run of one
    partition needs none: its counts are its own."""
    keys = context.partition_keys
    if len(keys) < 2:
        return
    counts: dict[tuple[str, dt.date], dict[str, int]] = {}
    for wh in loaded:
        for day, day_counts in wh.day_counts(start, end).items():
            counts[(wh.account, day)] = day_counts
    empty = {"listed": 0, "loaded": 0, "rejected": 0, "pending": 0}
    for key in keys:
        own = counts.get(split_key(key), empty)
        metadata = {f"partition_{name}": value for name, value in own.items()}
        for spec in SPECS:
            context.add_asset_metadata(metadata, asset_key=spec.key, partition_key=key)
