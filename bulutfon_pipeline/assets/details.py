"""The daily-partitioned detail load: ``cdrs`` and the tables normalized from each call."""

from typing import Any

import dagster as dg

from bulutfon_pipeline import checks
from bulutfon_pipeline.assets._common import (
    BACKFILL_POLICY,
    GROUP,
    WAREHOUSE_KIND,
    WRITER_POOL,
    api_metadata,
    partition_days,
    publish_after_load,
    refetch_requested,
)
from bulutfon_pipeline.loads import load_details
from bulutfon_pipeline.partitions import daily_partitions
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource


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
    partitions_def=daily_partitions,
    # A backfill of a long range becomes runs of up to 31 days each on DuckDB (few runs,
    # each writing in short transactions, serialized on the file by the pool), of up to
    # 3 days on PostgreSQL (several runs that load at the same time).
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
    wh = warehouse.warehouse()
    with bulutfon.client() as client:
        summary = load_details(
            client,
            wh,
            start=start,
            end=end,
            refetch=refetch_requested(context, config.refetch),
            batch_size=knobs.detail_batch_size,
            mirror_recording_deletes=knobs.data_dir if knobs.mirror_recording_deletes else None,
        )
        stats = client.stats.as_dict()
    context.log.info(
        "details %s..%s: %d listed, %d pending, %d fetched, %d new, %d updated, %d rejected",
        start,
        end,
        summary.listed,
        summary.pending,
        summary.fetched,
        summary.new,
        summary.updated,
        summary.rejected,
    )
    published = publish_after_load(context, wh, settings)
    common: dict[str, Any] = {**summary.to_metadata(), **api_metadata(stats), **published}
    preview = (
        summary.preview.to_markdown(index=False)
        if summary.preview is not None
        else "_no new calls in this range_"
    )
    yield dg.MaterializeResult(
        asset_key="cdrs", metadata={**common, "preview": dg.MetadataValue.md(preview)}
    )
    yield dg.MaterializeResult(asset_key="raw_cdr_details", metadata=common)
    yield dg.MaterializeResult(
        asset_key="call_flow_steps", metadata={**common, "rows_written": summary.flow_steps}
    )
    yield dg.MaterializeResult(
        asset_key="originations", metadata={**common, "rows_written": summary.originations}
    )
    yield from checks.evaluate(wh, lookback=knobs.lookback, reject_rate_warn=knobs.reject_rate_warn)
