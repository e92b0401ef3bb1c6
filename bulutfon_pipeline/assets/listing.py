"""The ``cdr_listing`` asset: the incremental scan of an account's CDR listing
(partitioned by account)."""

import datetime as dt
from typing import Any

import dagster as dg

from bulutfon_pipeline.accounts import Account
from bulutfon_pipeline.assets._common import (
    GROUP,
    WAREHOUSE_KIND,
    WRITER_POOL,
    api_metadata,
    per_account,
    publish_after_load,
    run_accounts,
    summed,
)
from bulutfon_pipeline.loads import ListingScanResult, scan_listing
from bulutfon_pipeline.partitions import account_partitions
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource
from bulutfon_pipeline.warehouse import Warehouse


class ListingConfig(dg.Config):
    """Run configuration of the listing scan."""

    reconcile_start: str = ""
    """YYYY-MM-DD: page back to this local day, not just the lookback, and compare every
    loaded call on the way with the listing (changes older than the lookback)."""
    reconcile_end: str = ""
    """YYYY-MM-DD: with reconcile_start, the last local day whose changes are taken."""


def _day(value: str) -> dt.date | None:
    return dt.date.fromisoformat(value) if value.strip() else None


def reconcile_config(start: dt.date, end: dt.date | None) -> dict[str, Any]:
    """The run config that makes ``cdr_listing`` reconcile the local days ``start..end``."""
    config = {"reconcile_start": start.isoformat(), "reconcile_end": ""}
    if end is not None:
        config["reconcile_end"] = end.isoformat()
    return {"ops": {"cdr_listing": {"config": config}}}


@dg.asset(
    group_name=GROUP,
    partitions_def=account_partitions,
    pool=WRITER_POOL,
    kinds={WAREHOUSE_KIND, "python"},
)
def cdr_listing(
    context: dg.AssetExecutionContext,
    config: ListingConfig,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """Every call seen in the Bulutfon CDR listing, scanned newest-first back to known data."""
    knobs = settings.get()
    loaded: list[Warehouse] = []

    def scan(account: Account) -> tuple[ListingScanResult, dict[str, int]]:
        wh = warehouse.warehouse(account.name)
        # On PostgreSQL no pool keeps runs apart: scans take turns on an advisory lock (a
        # scan that begins clears what others staged, which would make them fail).
        with bulutfon.client(account) as client, wh.listing_scan_lock(context.log.info):
            result = scan_listing(
                client,
                wh,
                lookback=knobs.lookback,
                start_date=account.start_date or knobs.start_date,
                chunk_rows=knobs.listing_chunk_rows,
                reconcile_start=_day(config.reconcile_start),
                reconcile_end=_day(config.reconcile_end),
            )
            stats = client.stats.as_dict()
        loaded.append(wh)
        context.log.info(
            "listing of %s: %d pages, %d items, %d new, %d updated, %d changed, %d rejected, "
            "%d days touched",
            account.name,
            result.pages,
            result.items,
            result.new,
            result.updated,
            result.changed,
            result.rejected,
            len(result.days_touched),
        )
        return result, stats

    done = list(per_account(context, run_accounts(context), scan))
    published = publish_after_load(context, loaded[0], settings)
    metadata = summed([{**r.to_metadata(), **api_metadata(stats)} for _, (r, stats) in done])
    return dg.MaterializeResult(metadata={**metadata, **published})
