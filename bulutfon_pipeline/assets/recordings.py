"""The daily-partitioned ``call_recordings`` asset: a thin wrapper around
:func:`bulutfon_pipeline.recordings.download_recordings`."""

import datetime as dt

import dagster as dg

from bulutfon_pipeline.assets.details import REFETCH_TAG
from bulutfon_pipeline.assets.listing import GROUP
from bulutfon_pipeline.partitions import daily_partitions
from bulutfon_pipeline.recordings import download_recordings
from bulutfon_pipeline.resources import BulutfonResource, WarehouseResource


class RecordingsConfig(dg.Config):
    """Run configuration of the recordings download."""

    refetch: bool = False
    """Retry calls whose recording was rejected before (404, REMOVED, bad audio)."""


@dg.asset(
    deps=["cdrs"],
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
    pool="duckdb",
    kinds={"duckdb", "python"},
)
def call_recordings(
    context: dg.AssetExecutionContext,
    config: RecordingsConfig,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """The audio of every recorded call of the partition's days, under BULUTFON_DATA_DIR."""
    window = context.partition_time_window
    start = window.start.date()
    end = (window.end - dt.timedelta(days=1)).date()
    refetch = config.refetch or context.run.tags.get(REFETCH_TAG, "").lower() == "true"
    wh = warehouse.warehouse()
    with bulutfon.client() as client:
        summary = download_recordings(
            client, wh, data_dir=client.config.data_dir, start=start, end=end, refetch=refetch
        )
        stats = client.stats.as_dict()
    context.log.info(
        "recordings %s..%s: %d candidates, %d downloaded, %d skipped, %d rejected",
        start,
        end,
        summary.candidates,
        summary.downloaded,
        summary.skipped,
        summary.rejected,
    )
    return dg.MaterializeResult(
        metadata={
            "range": f"{start.isoformat()}..{end.isoformat()}",
            "candidates": summary.candidates,
            "downloaded": summary.downloaded,
            "skipped": summary.skipped,
            "rejected": summary.rejected,
            "bytes": summary.bytes,
            "batches": summary.batches,
            "duration_s": round(summary.seconds, 3),
            **{f"api_{name}": value for name, value in stats.items()},
        }
    )
