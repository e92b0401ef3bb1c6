"""The integrity queries behind the asset checks: storage counts, orchestration decides.

Plain Python, no dagster: :func:`integrity_counts` returns numbers, and ``checks.py`` turns
them into check results.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bulutfon_pipeline.warehouse.facade import Warehouse

#: The bulk tables and their keys (``account`` first, as in every key; the counts are of
#: one account's rows). Their keys are not DuckDB constraints
#: (``schema.UNENFORCED_KEY_TABLES``): the loader keeps them unique, and the checks prove it.
KEYED_TABLES: dict[str, tuple[str, ...]] = {
    "cdrs": ("account", "uuid"),
    "call_flow_steps": ("account", "cdr_uuid", "step_index"),
    "originations": ("account", "cdr_uuid", "step_index", "attempt_index"),
    "raw_cdr_details": ("account", "uuid"),
}

# Each takes the account as its first parameter.
_ORPHAN_STEPS = """
SELECT count(*) FROM call_flow_steps s
WHERE s.account = ?
  AND NOT EXISTS (SELECT 1 FROM cdrs c WHERE c.account = s.account AND c.uuid = s.cdr_uuid)"""
_ORPHAN_ORIGINATIONS = """
SELECT count(*) FROM originations o
WHERE o.account = ?
  AND NOT EXISTS (SELECT 1 FROM call_flow_steps s
                  WHERE s.account = o.account AND s.cdr_uuid = o.cdr_uuid
                    AND s.step_index = o.step_index)"""
_LISTED_WITHOUT_DETAIL = """
SELECT count(*) FROM cdr_listing l WHERE l.account = ? AND l.call_time < ?
  AND NOT EXISTS (SELECT 1 FROM cdrs c WHERE c.account = l.account AND c.uuid = l.uuid)
  AND NOT EXISTS (
      SELECT 1 FROM load_rejects r WHERE r.account = l.account AND r.uuid = l.uuid)"""
_REJECTED_CALLS = """
SELECT count(DISTINCT r.uuid) FROM load_rejects r
WHERE r.account = ?
  AND NOT EXISTS (SELECT 1 FROM cdrs c WHERE c.account = r.account AND c.uuid = r.uuid)"""


@dataclass(frozen=True)
class IntegrityCounts:
    """What the checks judge, counted in one transaction."""

    #: table -> number of key values that appear more than once
    duplicate_keys: dict[str, int]
    orphan_flow_steps: int
    orphan_originations: int
    #: listed calls older than the high-water mark minus the lookback, with neither a
    #: ``cdrs`` row nor a reject (0 before the first scan)
    listed_without_detail: int
    listed_calls: int
    #: calls with a reject and no ``cdrs`` row
    rejected_calls: int

    @property
    def reject_rate(self) -> float:
        """Rejected calls per listed call (0 with an empty listing)."""
        return self.rejected_calls / self.listed_calls if self.listed_calls else 0.0


def integrity_counts(warehouse: Warehouse, *, lookback: dt.timedelta) -> IntegrityCounts:
    """Count duplicates, orphans, missing details and rejects of ``warehouse.account``.

    Args:
        warehouse: the warehouse (schema must exist) and the account.
        lookback: calls newer than the high-water mark minus this may still wait for
            their detail, and are not counted as missing.
    """
    hwm = warehouse.high_water_mark()
    account = warehouse.account
    with warehouse.transaction() as tx:

        def scalar(sql: str, *params: object) -> int:
            value = tx.scalar(sql, [account, *params])
            return int(value) if value is not None else 0

        duplicates = {
            table: scalar(
                f"SELECT count(*) FROM (SELECT 1 FROM {table} "  # noqa: S608 (our identifiers)
                f"WHERE account = ? GROUP BY {', '.join(keys)} HAVING count(*) > 1) AS repeated"
            )
            for table, keys in KEYED_TABLES.items()
        }
        return IntegrityCounts(
            duplicate_keys=duplicates,
            orphan_flow_steps=scalar(_ORPHAN_STEPS),
            orphan_originations=scalar(_ORPHAN_ORIGINATIONS),
            listed_without_detail=(
                scalar(_LISTED_WITHOUT_DETAIL, hwm - lookback) if hwm is not None else 0
            ),
            listed_calls=scalar("SELECT count(*) FROM cdr_listing WHERE account = ?"),
            rejected_calls=scalar(_REJECTED_CALLS),
        )


#: The directory's versioned tables and what identifies an entity in each (besides
#: ``account``); ``phone_number_hours`` is a day of a number.
DIRECTORY_ENTITIES: dict[str, tuple[str, ...]] = {
    "extensions": ("extension_id",),
    "ring_groups": ("group_id",),
    "ring_group_members": ("group_id", "extension_id"),
    "phone_numbers": ("did_id",),
    "phone_number_hours": ("did_id", "weekday"),
}


def _bad_versions_sql(table: str, entity: tuple[str, ...]) -> str:
    """Versions of one account's entities that overlap a later version of the same entity
    (two open versions included), or that end before they start."""
    same = " AND ".join(f"b.{column} = a.{column}" for column in entity)
    return (
        f"SELECT (SELECT count(*) FROM {table} a JOIN {table} b"  # noqa: S608 (constants)
        f" ON b.account = a.account AND {same} AND a.valid_from < b.valid_from"
        " AND (a.valid_to IS NULL OR a.valid_to > b.valid_from) WHERE a.account = ?)"
        f" + (SELECT count(*) FROM {table} WHERE account = ? AND valid_to <= valid_from)"
    )


def directory_version_errors(warehouse: Warehouse) -> dict[str, int]:
    """Per directory table, the versions of the warehouse's account that overlap another
    version of their entity or end before they start (0 everywhere when the versioning
    holds: at any instant an entity has at most one version)."""
    account = warehouse.account
    out: dict[str, int] = {}
    with warehouse.transaction() as con:
        for table, entity in DIRECTORY_ENTITIES.items():
            row = con.execute(_bad_versions_sql(table, entity), [account, account]).fetchone()
            out[table] = int(row[0]) if row else 0
    return out
