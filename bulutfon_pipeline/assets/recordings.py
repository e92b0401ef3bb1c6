"""The account x day partitioned ``call_recordings`` asset: a thin wrapper around
:func:`bulutfon_pipeline.recordings.download_recordings`."""

import dagster as dg

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
from bulutfon_pipeline.partitions import account_day_partitions
from bulutfon_pipeline.recordings import RecordingsSummary, download_recordings
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource
from bulutfon_pipeline.warehouse import Warehouse


class RecordingsConfig(dg.Config):
    """Run configuration of the recordings download."""

    refetch: bool = False
    """Retry calls whose recording was rejected before (404, REMOVED, bad audio)."""


@dg.asset(
    deps=["cdrs"],
    group_name=GROUP,
    partitions_def=account_day_partitions,
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
    data_dir = settings.get().data_dir
    refetch = refetch_requested(context, config.refetch)
    loaded: list[Warehouse] = []

    def download(account: Account) -> tuple[RecordingsSummary, dict[str, int]]:
        wh = warehouse.warehouse(account.name)
        with bulutfon.client(account) as client:
            summary = download_recordings(
                client,
                wh,
                data_dir=data_dir,
                start=start,
                end=end,
                refetch=refetch,
                folder=account.recordings_folder,
            )
            stats = client.stats.as_dict()
        loaded.append(wh)
        context.log.info(
            "recordings of %s %s..%s: %d candidates, %d downloaded, %d skipped, %d rejected",
            account.name,
            start,
            end,
            summary.candidates,
            summary.downloaded,
            summary.skipped,
            summary.rejected,
        )
        return summary, stats

    done = list(per_account(context, run_accounts(context), download))
    published = publish_after_load(context, loaded[0], settings)
    metadata = summed([{**r.to_metadata(), **api_metadata(stats)} for _, (r, stats) in done])
    return dg.MaterializeResult(metadata={**metadata, **published})
