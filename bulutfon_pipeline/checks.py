"""Asset checks of the call tables, evaluated after every detail load, and of the
directory's versions, evaluated after every directory load."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence

import dagster as dg

from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.integrity import (
    KEYED_TABLES,
    IntegrityCounts,
    directory_version_errors,
    integrity_counts,
)

CHECK_SPECS = [
    dg.AssetCheckSpec(
        "cdrs_uuid_unique", asset="cdrs", description="No uuid appears twice in cdrs."
    ),
    dg.AssetCheckSpec(
        "call_flow_steps_key_unique",
        asset="call_flow_steps",
        description="No (cdr_uuid, step_index) appears twice in call_flow_steps.",
    ),
    dg.AssetCheckSpec(
        "originations_key_unique",
        asset="originations",
        description="No (cdr_uuid, step_index, attempt_index) appears twice in originations.",
    ),
    dg.AssetCheckSpec(
        "raw_cdr_details_uuid_unique",
        asset="raw_cdr_details",
        description="No uuid appears twice in raw_cdr_details.",
    ),
    dg.AssetCheckSpec(
        "call_flow_steps_has_parent",
        asset="call_flow_steps",
        description="Every flow step belongs to a call in cdrs.",
    ),
    dg.AssetCheckSpec(
        "originations_has_parent",
        asset="originations",
        description="Every origination belongs to a flow step.",
    ),
    dg.AssetCheckSpec(
        "cdrs_complete",
        asset="cdrs",
        description=(
            "Every listed call older than the lookback window has its detail loaded "
            "or a reject row."
        ),
    ),
    dg.AssetCheckSpec(
        "cdrs_reject_rate",
        asset="cdrs",
        description="The share of listed calls rejected stays below BULUTFON_REJECT_RATE_WARN.",
    ),
]


#: table -> (its key-uniqueness check, the metadata key of the count)
_KEY_CHECKS = {
    "cdrs": ("cdrs_uuid_unique", "duplicate_uuids"),
    "call_flow_steps": ("call_flow_steps_key_unique", "duplicate_keys"),
    "originations": ("originations_key_unique", "duplicate_keys"),
    "raw_cdr_details": ("raw_cdr_details_uuid_unique", "duplicate_keys"),
}
assert set(_KEY_CHECKS) == set(KEYED_TABLES)


def _summed(counts: Sequence[IntegrityCounts]) -> IntegrityCounts:
    """The counts of several accounts' rows as one."""
    first, *rest = counts
    if not rest:
        return first
    return dataclasses.replace(
        first,
        duplicate_keys={
            table: sum(c.duplicate_keys[table] for c in counts) for table in first.duplicate_keys
        },
        orphan_flow_steps=sum(c.orphan_flow_steps for c in counts),
        orphan_originations=sum(c.orphan_originations for c in counts),
        listed_without_detail=sum(c.listed_without_detail for c in counts),
        listed_calls=sum(c.listed_calls for c in counts),
        rejected_calls=sum(c.rejected_calls for c in counts),
    )


def evaluate(
    wh: Warehouse | Sequence[Warehouse], *, lookback: dt.timedelta, reject_rate_warn: float
) -> Iterator[dg.AssetCheckResult]:
    """Turn the warehouse's integrity counts into a result for every check in
    :data:`CHECK_SPECS`.

    Args:
        wh: the warehouse just loaded (one per account of the run; their counts add up).
        lookback: calls newer than the high-water mark minus this are not yet missing.
        reject_rate_warn: ``cdrs_reject_rate`` warns above this share of listed calls.
    """
    warehouses = [wh] if isinstance(wh, Warehouse) else list(wh)
    counts = _summed([integrity_counts(w, lookback=lookback) for w in warehouses])
    for table, (name, key) in _KEY_CHECKS.items():
        repeated = counts.duplicate_keys[table]
        yield dg.AssetCheckResult(
            check_name=name, asset_key=table, passed=repeated == 0, metadata={key: repeated}
        )
    for name, table, orphans in (
        ("call_flow_steps_has_parent", "call_flow_steps", counts.orphan_flow_steps),
        ("originations_has_parent", "originations", counts.orphan_originations),
    ):
        yield dg.AssetCheckResult(
            check_name=name, asset_key=table, passed=orphans == 0, metadata={"orphan_rows": orphans}
        )
    yield dg.AssetCheckResult(
        check_name="cdrs_complete",
        asset_key="cdrs",
        passed=counts.listed_without_detail == 0,
        metadata={"listed_without_detail": counts.listed_without_detail},
    )
    yield dg.AssetCheckResult(
        check_name="cdrs_reject_rate",
        asset_key="cdrs",
        passed=counts.reject_rate <= reject_rate_warn,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected_calls": counts.rejected_calls,
            "listed_calls": counts.listed_calls,
            "reject_rate": counts.reject_rate,
        },
    )


#: directory table -> (its check, the asset it belongs to: a number's hours are the
#: ``phone_numbers`` asset's)
_DIRECTORY_CHECKS = {
    "extensions": ("extensions_versions_consistent", "extensions"),
    "ring_groups": ("ring_groups_versions_consistent", "ring_groups"),
    "ring_group_members": ("ring_group_members_versions_consistent", "ring_group_members"),
    "phone_numbers": ("phone_numbers_versions_consistent", "phone_numbers"),
    "phone_number_hours": ("phone_number_hours_versions_consistent", "phone_numbers"),
}

DIRECTORY_CHECK_SPECS = [
    dg.AssetCheckSpec(
        name,
        asset=asset,
        description=(
            f"No two versions of one entity of {table} are valid at the same instant, and "
            "none ends before it starts."
        ),
    )
    for table, (name, asset) in _DIRECTORY_CHECKS.items()
]


def evaluate_directory(warehouses: Sequence[Warehouse]) -> Iterator[dg.AssetCheckResult]:
    """A result for every check of :data:`DIRECTORY_CHECK_SPECS`, over the accounts of
    ``warehouses`` (their counts add up)."""
    errors = [directory_version_errors(wh) for wh in warehouses]
    for table, (name, asset) in _DIRECTORY_CHECKS.items():
        bad = sum(e[table] for e in errors)
        yield dg.AssetCheckResult(
            check_name=name, asset_key=asset, passed=bad == 0, metadata={"bad_versions": bad}
        )
