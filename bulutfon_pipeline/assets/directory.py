"""The ``directory`` multi-asset: the PBX's extensions, ring groups (and their members)
and phone numbers (with their working hours), versioned (partitioned by account)."""

import dagster as dg

from bulutfon_pipeline import checks
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
from bulutfon_pipeline.directory import DirectoryLoadSummary, load_directory
from bulutfon_pipeline.partitions import account_partitions
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource
from bulutfon_pipeline.warehouse import Warehouse

SPECS = [
    dg.AssetSpec(
        "extensions",
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="The PBX's extensions (name, e-mail, DID, forwarding), one row per version.",
    ),
    dg.AssetSpec(
        "ring_groups",
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="The PBX's ring groups (number, name, timings), one row per version.",
    ),
    dg.AssetSpec(
        "ring_group_members",
        deps=["ring_groups", "extensions"],
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="Which extensions each ring group rings, from when to when.",
    ),
    dg.AssetSpec(
        "phone_numbers",
        group_name=GROUP,
        kinds={WAREHOUSE_KIND},
        description="The PBX's numbers (DIDs), their destination and weekly working hours "
        "(phone_number_hours), one row per version.",
    ),
]


@dg.multi_asset(
    name="directory",
    specs=SPECS,
    partitions_def=account_partitions,
    pool=WRITER_POOL,
    check_specs=checks.DIRECTORY_CHECK_SPECS,
)
def directory(
    context: dg.AssetExecutionContext,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
):
    """Fetch the PBX's directory and merge its versions (extensions, groups, numbers)."""
    loaded: list[Warehouse] = []

    def load(account: Account) -> tuple[DirectoryLoadSummary, dict[str, int]]:
        wh = warehouse.warehouse(account.name)
        with bulutfon.client(account) as client:
            summary = load_directory(client, wh)
            stats = client.stats.as_dict()
        loaded.append(wh)
        context.log.info(
            "directory of %s: %d requests, %d versions opened, %d closed, %d rejected%s",
            account.name,
            summary.requests,
            sum(summary.opened.values()),
            sum(summary.closed.values()),
            summary.rejected,
            " (skipped: v2)" if summary.skipped else "",
        )
        return summary, stats

    done = list(per_account(context, run_accounts(context), load))
    # A refresh that changed nothing (the common case: the listing job runs it every
    # tick) leaves the analysts' copy as the listing's publish made it.
    changed = any(s.writes or s.rejected for _, (s, _stats) in done)
    published = publish_after_load(context, loaded[0], settings) if changed else {}
    metadata = summed([{**s.to_metadata(), **api_metadata(stats)} for _, (s, stats) in done])
    for spec in SPECS:
        yield dg.MaterializeResult(asset_key=spec.key, metadata={**metadata, **published})
    yield from checks.evaluate_directory(loaded)
