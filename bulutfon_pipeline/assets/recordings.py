"""The daily-partitioned ``call_recordings`` asset: a thin wrapper around
:func:`bulutfon_pipeline.recordings.download_recordings`."""

import dagster as dg

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
from bulutfon_pipeline.partitions import daily_partitions
from bulutfon_pipeline.recordings import download_recordings
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource


class RecordingsConfig(dg.Config):
    """Run configuration of the recordings download."""

    refetch: bool = False
    """Retry calls whose recording was rejected before (404, REMOVED, bad audio)."""


@dg.asset(
    deps=["cdrs"],
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    pool=WRITER_POOL,
    kinds={WAREHOUSE_KIND, "python"},
)
def call_recordings(
    context: dg.AssetExecutionContext,
    config: RecordingsConfig,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """The audio of every recorded call of the partition's days, under BULUTFON_DATA_DIR."""
    start, end = partition_days(context)
    wh = warehouse.warehouse()
    with bulutfon.client() as client:
        summary = download_recordings(
            client,
            wh,
            data_dir=settings.get().data_dir,
            start=start,
            end=end,
            refetch=refetch_requested(context, config.refetch),
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
    published = publish_after_load(context, wh, settings)
    return dg.MaterializeResult(
        metadata={**summary.to_metadata(), **api_metadata(stats), **published}
    )
