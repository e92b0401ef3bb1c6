"""The ``cdr_listing`` asset: the incremental scan of the CDR listing."""

import dagster as dg

from bulutfon_pipeline.assets._common import GROUP, api_metadata, publish_after_load
from bulutfon_pipeline.loads import scan_listing
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource


@dg.asset(group_name=GROUP, pool="duckdb", kinds={"duckdb", "python"})
def cdr_listing(
    context: dg.AssetExecutionContext,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """Every call seen in the Bulutfon CDR listing, scanned newest-first back to known data."""
    knobs = settings.get()
    wh = warehouse.warehouse()
    with bulutfon.client() as client:
        result = scan_listing(
            client,
            wh,
            lookback=knobs.lookback,
            start_date=knobs.start_date,
            chunk_rows=knobs.listing_chunk_rows,
        )
        stats = client.stats.as_dict()
    context.log.info(
        "listing: %d pages, %d items, %d new, %d updated, %d rejected, %d days touched",
        result.pages,
        result.items,
        result.new,
        result.updated,
        result.rejected,
        len(result.days_touched),
    )
    published = publish_after_load(context, wh, settings)
    return dg.MaterializeResult(
        metadata={**result.to_metadata(), **api_metadata(stats), **published}
    )
