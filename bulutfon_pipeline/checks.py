"""Asset checks of the call tables, evaluated after every detail load."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import dagster as dg

from bulutfon_pipeline.settings import DEFAULT_REJECT_RATE_WARN
from bulutfon_pipeline.warehouse import Warehouse

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


def _scalar(wh: Warehouse, sql: str, params: list[object] | None = None) -> int:
    with wh.transaction() as con:
        row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def evaluate(wh: Warehouse, *, lookback: dt.timedelta) -> Iterator[dg.AssetCheckResult]:
    """Run every check in :data:`CHECK_SPECS` against the warehouse."""
    duplicates = _scalar(
        wh, "SELECT count(*) FROM (SELECT uuid FROM cdrs GROUP BY uuid HAVING count(*) > 1)"
    )
    yield dg.AssetCheckResult(
        check_name="cdrs_uuid_unique",
        asset_key="cdrs",
        passed=duplicates == 0,
        metadata={"duplicate_uuids": duplicates},
    )
    # The keys of the bulk tables are not DuckDB constraints (schema.UNENFORCED_KEY_TABLES):
    # the loader keeps them unique, and these checks prove it after every load.
    for check, table, keys in (
        ("call_flow_steps_key_unique", "call_flow_steps", "cdr_uuid, step_index"),
        ("originations_key_unique", "originations", "cdr_uuid, step_index, attempt_index"),
        ("raw_cdr_details_uuid_unique", "raw_cdr_details", "uuid"),
    ):
        repeated = _scalar(
            wh,
            f"SELECT count(*) FROM (SELECT 1 FROM {table} "  # noqa: S608 (identifiers are ours)
            f"GROUP BY {keys} HAVING count(*) > 1)",
        )
        yield dg.AssetCheckResult(
            check_name=check,
            asset_key=table,
            passed=repeated == 0,
            metadata={"duplicate_keys": repeated},
        )
    orphan_steps = _scalar(
        wh,
        "SELECT count(*) FROM call_flow_steps s "
        "WHERE NOT EXISTS (SELECT 1 FROM cdrs c WHERE c.uuid = s.cdr_uuid)",
    )
    yield dg.AssetCheckResult(
        check_name="call_flow_steps_has_parent",
        asset_key="call_flow_steps",
        passed=orphan_steps == 0,
        metadata={"orphan_rows": orphan_steps},
    )
    orphan_originations = _scalar(
        wh,
        "SELECT count(*) FROM originations o WHERE NOT EXISTS (SELECT 1 FROM call_flow_steps s "
        "WHERE s.cdr_uuid = o.cdr_uuid AND s.step_index = o.step_index)",
    )
    yield dg.AssetCheckResult(
        check_name="originations_has_parent",
        asset_key="originations",
        passed=orphan_originations == 0,
        metadata={"orphan_rows": orphan_originations},
    )
    hwm = wh.high_water_mark()
    missing = 0
    if hwm is not None:
        missing = _scalar(
            wh,
            "SELECT count(*) FROM cdr_listing l WHERE l.call_time < ? "
            "AND NOT EXISTS (SELECT 1 FROM cdrs c WHERE c.uuid = l.uuid) "
            "AND NOT EXISTS (SELECT 1 FROM load_rejects r WHERE r.uuid = l.uuid)",
            [hwm - lookback],
        )
    yield dg.AssetCheckResult(
        check_name="cdrs_complete",
        asset_key="cdrs",
        passed=missing == 0,
        metadata={"listed_without_detail": missing},
    )
    listed = _scalar(wh, "SELECT count(*) FROM cdr_listing")
    rejected = _scalar(
        wh,
        "SELECT count(DISTINCT r.uuid) FROM load_rejects r "
        "WHERE NOT EXISTS (SELECT 1 FROM cdrs c WHERE c.uuid = r.uuid)",
    )
    threshold = float(os.environ.get("BULUTFON_REJECT_RATE_WARN") or DEFAULT_REJECT_RATE_WARN)
    rate = rejected / listed if listed else 0.0
    yield dg.AssetCheckResult(
        check_name="cdrs_reject_rate",
        asset_key="cdrs",
        passed=rate <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rejected_calls": rejected, "listed_calls": listed, "reject_rate": rate},
    )
