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

# Each takes the account as every parameter but the listing's instant (the second).
# They group rows rather than join them: on DuckDB each anti-join took a hash table of
# 8-16 MB however few rows it held (24 MB for the listing's), where the accounts loading
# in threads share 80 MB; grouping takes 1-2 MB (``benchmarks/ANALYSIS.md``, session 37).
# A group's ``parent`` is 1 when the key has its parent row.
_ORPHAN_STEPS = """
SELECT coalesce(sum(n), 0) FROM (
  SELECT sum(child) AS n, max(parent) AS parent FROM (
    SELECT cdr_uuid AS uuid, 1 AS child, 0 AS parent FROM call_flow_steps WHERE account = ?
    UNION ALL SELECT uuid, 0, 1 FROM cdrs WHERE account = ?
  ) AS keyed GROUP BY uuid
) AS per_call WHERE parent = 0"""
_ORPHAN_ORIGINATIONS = """
SELECT coalesce(sum(n), 0) FROM (
  SELECT sum(child) AS n, max(parent) AS parent FROM (
    SELECT cdr_uuid, step_index, 1 AS child, 0 AS parent FROM originations WHERE account = ?
    UNION ALL SELECT cdr_uuid, step_index, 0, 1 FROM call_flow_steps WHERE account = ?
  ) AS keyed GROUP BY cdr_uuid, step_index
) AS per_step WHERE parent = 0"""
_LISTED_WITHOUT_DETAIL = """
SELECT coalesce(sum(n), 0) FROM (
  SELECT sum(child) AS n, max(parent) AS parent FROM (
    SELECT uuid, 1 AS child, 0 AS parent FROM cdr_listing WHERE account = ? AND call_time < ?
    UNION ALL SELECT uuid, 0, 1 FROM cdrs WHERE account = ?
    UNION ALL SELECT uuid, 0, 1 FROM load_rejects WHERE account = ? AND uuid IS NOT NULL
  ) AS keyed GROUP BY uuid
) AS per_call WHERE parent = 0"""
_REJECTED_CALLS = """
SELECT count(*) FROM (
  SELECT max(child) AS rejected, max(parent) AS parent FROM (
    SELECT uuid, 1 AS child, 0 AS parent FROM load_rejects WHERE account = ? AND uuid IS NOT NULL
    UNION ALL SELECT uuid, 0, 1 FROM cdrs WHERE account = ?
  ) AS keyed GROUP BY uuid
) AS per_call WHERE rejected = 1 AND parent = 0"""


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
            orphan_flow_steps=scalar(_ORPHAN_STEPS, account),
            orphan_originations=scalar(_ORPHAN_ORIGINATIONS, account),
            listed_without_detail=(
                scalar(_LISTED_WITHOUT_DETAIL, hwm - lookback, account, account)
                if hwm is not None
                else 0
            ),
            listed_calls=scalar("SELECT count(*) FROM cdr_listing WHERE account = ?"),
            rejected_calls=scalar(_REJECTED_CALLS, account),
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
