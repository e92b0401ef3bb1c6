"""The daily-partitioned detail load: ``cdrs`` and the tables normalized from each call."""

import datetime as dt
from typing import Any

import dagster as dg

from bulutfon_pipeline import checks
from bulutfon_pipeline.assets.listing import GROUP
from bulutfon_pipeline.loads import load_details
from bulutfon_pipeline.partitions import daily_partitions
from bulutfon_pipeline.recordings import data_dir_from_env
from bulutfon_pipeline.resources import BulutfonResource, LoadSettings, WarehouseResource

#: A run tag that makes any run (a UI backfill included) fetch loaded calls again.
REFETCH_TAG = "bulutfon/refetch"


class DetailsConfig(dg.Config):
    """Run configuration of the detail load."""

    refetch: bool = False
    """Fetch every listed call of the range again, not only the ones not loaded yet."""


SPECS = [
    dg.AssetSpec(
        "cdrs",
        deps=["cdr_listing"],
        group_name=GROUP,
        kinds={"duckdb"},
        description="One row per call with its detail, normalized to the canonical vocabulary.",
    ),
    dg.AssetSpec(
        "raw_cdr_details",
        deps=["cdr_listing"],
        group_name=GROUP,
        kinds={"duckdb"},
        description="Each call's detail payload exactly as received, for replays.",
    ),
    dg.AssetSpec(
        "call_flow_steps",
        deps=["cdrs"],
        group_name=GROUP,
        kinds={"duckdb"},
        description="The ordered steps of each call through menus, groups and extensions.",
    ),
    dg.AssetSpec(
        "originations",
        deps=["call_flow_steps"],
        group_name=GROUP,
        kinds={"duckdb"},
        description="Every phone a ring group rang for a call, and who answered.",
    ),
]


@dg.multi_asset(
    name="cdr_details",
    specs=SPECS,
    check_specs=checks.CHECK_SPECS,
    partitions_def=daily_partitions,
    # A backfill of a long range becomes runs of up to 31 days each: few runs, each
    # writing in short transactions, all serialized on the DuckDB file by the pool.
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
    pool="duckdb",
)
def cdr_details(
    context: dg.AssetExecutionContext,
    config: DetailsConfig,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
):
    """Fetch each listed call's detail for the partition's days and load the call tables."""
    window = context.partition_time_window
    start = window.start.date()
    end = (window.end - dt.timedelta(days=1)).date()
    refetch = config.refetch or context.run.tags.get(REFETCH_TAG, "").lower() == "true"
    settings = LoadSettings.from_env()
    wh = warehouse.warehouse()
    with bulutfon.client() as client:
        summary = load_details(
            client,
            wh,
            start=start,
            end=end,
            refetch=refetch,
            batch_size=settings.detail_batch_size,
            mirror_recording_deletes=(
                data_dir_from_env() if settings.mirror_recording_deletes else None
            ),
        )
        stats = client.stats.as_dict()
    with wh.transaction() as con:
        row = con.execute(
            "SELECT count(*) FROM cdr_listing WHERE call_date BETWEEN ? AND ?", [start, end]
        ).fetchone()
    listed = int(row[0]) if row else 0
    context.log.info(
        "details %s..%s: %d listed, %d pending, %d fetched, %d new, %d updated, %d rejected",
        start,
        end,
        listed,
        summary.pending,
        summary.fetched,
        summary.new,
        summary.updated,
        summary.rejected,
    )
    common: dict[str, Any] = {
        "range": f"{start.isoformat()}..{end.isoformat()}",
        "calls_listed": listed,
        "calls_pending": summary.pending,
        "calls_fetched": summary.fetched,
        "calls_new": summary.new,
        "calls_updated": summary.updated,
        "calls_rejected": summary.rejected,
        "changes": summary.changes,
        "recordings_deleted": summary.recordings_deleted,
        "batches": summary.batches,
        "duration_s": round(summary.seconds, 3),
        **{f"api_{name}": value for name, value in stats.items()},
    }
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
    yield from checks.evaluate(wh, lookback=settings.lookback)
