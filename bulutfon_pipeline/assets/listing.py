"""The ``cdr_listing`` asset: the incremental scan of the CDR listing."""

import datetime as dt

import dagster as dg

from bulutfon_pipeline.loads import scan_listing
from bulutfon_pipeline.resources import BulutfonResource, LoadSettings, WarehouseResource

GROUP = "bulutfon"


class ListingConfig(dg.Config):
    """Run configuration of the listing scan."""

    reconcile_start: str = ""
    """YYYY-MM-DD: page back to this local day, not just the lookback, and compare every
    loaded call on the way with the listing (changes older than the lookback)."""
    reconcile_end: str = ""
    """YYYY-MM-DD: with reconcile_start, the last local day whose changes are taken."""


def _day(value: str) -> dt.date | None:
    return dt.date.fromisoformat(value) if value.strip() else None


@dg.asset(group_name=GROUP, pool="duckdb", kinds={"duckdb", "python"})
def cdr_listing(
    context: dg.AssetExecutionContext,
    config: ListingConfig,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Every call seen in the Bulutfon CDR listing, scanned newest-first back to known data."""
    settings = LoadSettings.from_env()
    wh = warehouse.warehouse()
    with bulutfon.client() as client:
        result = scan_listing(
            client,
            wh,
            lookback=settings.lookback,
            start_date=settings.start_date,
            chunk_rows=settings.listing_chunk_rows,
            reconcile_start=_day(config.reconcile_start),
            reconcile_end=_day(config.reconcile_end),
        )
        stats = client.stats.as_dict()
    context.log.info(
        "listing: %d pages, %d items, %d new, %d updated, %d changed, %d rejected, %d days touched",
        result.pages,
        result.items,
        result.new,
        result.updated,
        result.changed,
        result.rejected,
        len(result.days_touched),
    )
    days = [day.isoformat() for day in result.days_touched]
    return dg.MaterializeResult(
        metadata={
            "pages": result.pages,
            "calls_listed": result.items,
            "new": result.new,
            "updated": result.updated,
            "changed": result.changed,
            "rejected": result.rejected,
            "days_touched": len(days),
            "days": dg.MetadataValue.json(days[:400]),
            "staged_chunks": result.staged_chunks,
            "stopped_before": str(result.stop_before),
            "high_water_mark": str(result.high_water_mark),
            "duration_s": round(result.seconds, 3),
            **{f"api_{name}": value for name, value in stats.items()},
        }
    )
