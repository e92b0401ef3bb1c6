"""Calls that change after they were loaded: detection, the ``cdr_changes`` audit, and
mirroring recordings the source removed.

A call's record is not frozen when it ends: the PBX later removes a recording, sets or
corrects a price, corrects a time. The listing carries every field that changes
(:data:`TRACKED_FIELDS`), so a change costs no extra request to find:

1. :func:`detect` compares each listed call's tracked fields, normalised exactly as its
   detail would be, with its ``cdrs`` row, and returns the calls that differ.
2. :func:`mark_for_refetch` records them in ``_cdr_refetch``, in its own transaction,
   before the listing scan's last transaction: whatever happens next, the marks (and
   the difference itself, which the next scan of the same range finds again) survive.
   ``Warehouse.pending_uuids`` / ``pending_dates`` treat a marked call as pending.
3. The detail load that re-fetches a marked call writes its new rows, its
   ``cdr_changes`` rows and deletes its mark in ONE transaction
   (:func:`snapshot_before_write`, :func:`record_changes`, :func:`clear_refetch`, called
   by ``Warehouse.load_details``): a crash before that COMMIT leaves the call, its
   audit and its mark exactly as before, and the next sync re-fetches it.

Recording deletes: a re-fetched call that no longer has a recording (``REMOVED`` in v1,
``Yok`` in the seed dialect) while a ``call_recordings`` row exists loses that row and its
file in the same transaction, unless mirroring is off (``BULUTFON_MIRROR_RECORDING_DELETES=0``).
The file is deleted *before* the COMMIT: a crash in between leaves a row whose file is
gone and the call still marked, so the next sync re-fetches it and deletes the row; the
other order could leave a file that no row or mark would ever point at again.

Plain Python, no dagster. Identifiers in SQL come from the constants below, never from data.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from bulutfon_pipeline.normalize import normalize_details
from bulutfon_pipeline.warehouse import schema
from bulutfon_pipeline.warehouse.backend import Transaction

if TYPE_CHECKING:
    from bulutfon_pipeline.warehouse.facade import Warehouse

__all__ = [
    "AUDITED_FIELDS",
    "RECORDING_FILE_FIELD",
    "TRACKED_FIELDS",
    "AuditResult",
    "ChangedCall",
    "clear_refetch",
    "detect",
    "mark_for_refetch",
    "record_changes",
    "snapshot_before_write",
]

log = logging.getLogger(__name__)

#: The listing fields that change after a call ended, by their ``cdrs`` column (as sent).
TRACKED_FIELDS: tuple[str, ...] = (
    "call_record",
    "call_price",
    "missing_call",
    "answer_time",
    "hangup_time",
    "hangup_cause",
    "hangup_state",
)
#: The ``cdrs`` columns whose changes ``cdr_changes`` records: every column the API
#: sends (derived ones such as ``has_recording`` or ``talk_seconds`` follow from these).
AUDITED_FIELDS: tuple[str, ...] = (
    "call_type",
    "direction",
    "caller",
    "callee",
    "extension",
    "call_time",
    *TRACKED_FIELDS,
)
#: The ``cdr_changes.field`` of a recording file deleted because the source removed it
#: (``old_value`` its path relative to BULUTFON_DATA_DIR, ``new_value`` NULL).
RECORDING_FILE_FIELD = "recording_file"

_INSTANTS = frozenset({"call_time", "answer_time", "hangup_time"})


@dataclass(frozen=True)
class ChangedCall:
    """A loaded call whose listing differs from its ``cdrs`` row.

    Attributes:
        fields: the tracked fields that differ, in :data:`TRACKED_FIELDS` order.
    """

    uuid: str
    call_date: dt.date
    fields: tuple[str, ...]


@dataclass(frozen=True)
class AuditResult:
    """What :func:`record_changes` wrote: ``cdr_changes`` rows (recording deletions
    included) and recording files deleted."""

    changes: int = 0
    recordings_deleted: int = 0


# --- detection (listing scan) -----------------------------------------------------------


def _comparable(value: Any) -> Any:
    """One value as Python compares it: NULL/NaT -> None, pandas instants -> datetime."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def _same(listed: Any, stored: Any) -> bool:
    listed, stored = _comparable(listed), _comparable(stored)
    if listed is None or stored is None:
        return listed is None and stored is None
    if isinstance(listed, Decimal) or isinstance(stored, Decimal):
        return Decimal(str(listed)) == Decimal(str(stored))
    return bool(listed == stored)


def _uuid_of(item: object) -> str | None:
    if not isinstance(item, Mapping):
        return None
    uuid = item.get("uuid")
    if isinstance(uuid, bool) or not isinstance(uuid, str | int) or uuid == "":
        return None
    return str(uuid)


def detect(
    warehouse: Warehouse,
    items: Iterable[object],
    *,
    last_day: dt.date | None = None,
) -> list[ChangedCall]:
    """The listed calls whose tracked fields differ from their ``cdrs`` rows.

    Each item is normalised as its detail would be (the same function, without a
    ``call_flow``), so both API dialects compare in the canonical form ``cdrs`` holds. A
    field is compared only when the item carries its key: a listing that leaves a field
    out says nothing about it. Calls without a ``cdrs`` row (new, or rejected) and items
    that cannot be normalised are left out: the detail load sees to them. Costs one read
    of ``cdrs`` for the items' uuids and no request.

    Args:
        warehouse: the warehouse (schema in place).
        items: listing items as decoded from JSON; a uuid seen twice keeps its last item.
        last_day: leave out calls whose local ``call_date`` is after this day.

    Returns:
        The changed calls, in the order of their first item.
    """
    by_uuid: dict[str, Mapping[str, Any]] = {}
    for item in items:
        uuid = _uuid_of(item)
        if uuid is not None:
            assert isinstance(item, Mapping)
            by_uuid[uuid] = item
    if not by_uuid:
        return []
    columns = ", ".join(TRACKED_FIELDS)
    listed_uuids = pa.table({"uuid": pa.array(list(by_uuid), pa.string())})
    with warehouse.transaction() as tx, tx.batches(listed_uuids=listed_uuids):
        rows = tx.execute(
            f"SELECT uuid, call_date, {columns} FROM cdrs "  # noqa: S608 - constant columns
            "WHERE account = ? AND uuid IN (SELECT uuid FROM listed_uuids)",
            [warehouse.account],
        ).fetchall()
    stored = {row[0]: row for row in rows}
    if not stored:
        return []
    listed = normalize_details([by_uuid[uuid] for uuid in by_uuid if uuid in stored]).cdrs
    changed: list[ChangedCall] = []
    for record in listed[["uuid", *TRACKED_FIELDS]].itertuples(index=False, name=None):
        row = stored.get(record[0])
        if row is None:
            continue
        if last_day is not None and row[1] > last_day:
            continue
        item = by_uuid[record[0]]
        fields = tuple(
            name
            for name, new, old in zip(TRACKED_FIELDS, record[1:], row[2:], strict=True)
            if name in item and not _same(new, old)
        )
        if fields:
            changed.append(ChangedCall(uuid=record[0], call_date=row[1], fields=fields))
    order = {uuid: i for i, uuid in enumerate(by_uuid)}
    return sorted(changed, key=lambda call: order[call.uuid])


def mark_for_refetch(
    warehouse: Warehouse, changed: Sequence[ChangedCall], *, detected_at: dt.datetime
) -> int:
    """Record changed calls of ``warehouse.account`` in ``_cdr_refetch`` (their detail is
    fetched again), in one transaction. A call marked already keeps its first
    ``detected_at``.

    Returns:
        Calls marked.
    """
    if not changed:
        return 0
    batch = pa.table(
        {
            "account": pa.array([warehouse.account] * len(changed), pa.string()),
            "uuid": pa.array([c.uuid for c in changed], pa.string()),
            "call_date": pa.array([c.call_date for c in changed], pa.date32()),
            "fields": pa.array([",".join(c.fields) for c in changed], pa.string()),
            "detected_at": pa.array(
                [detected_at.astimezone(dt.UTC)] * len(changed), pa.timestamp("us", "UTC")
            ),
        }
    )
    with warehouse.transaction() as tx, tx.batches(refetch_batch=batch):
        tx.upsert(schema.cdr_refetch, "refetch_batch", keep=("detected_at",))
    return len(changed)


# --- the audit, inside a detail load's transaction ----------------------------------------


def _text_sql(tx: Transaction, column: str, alias: str) -> str:
    """SQL rendering ``alias.column`` as the text ``cdr_changes`` stores."""
    if column in _INSTANTS:
        return tx.iso_instant_sql(f"{alias}.{column}")
    return f"CAST({alias}.{column} AS VARCHAR)"


def snapshot_before_write(tx: Transaction, uuids: Sequence[str], *, account: str) -> bool:
    """Keep the stored ``cdrs`` values of ``account``'s ``uuids`` in a temporary table, for
    :func:`record_changes` after the batch is written.

    Returns:
        Whether any of them had a ``cdrs`` row (nothing to audit otherwise).
    """
    columns = ", ".join(AUDITED_FIELDS)
    audit_uuids = pa.table({"uuid": pa.array(list(uuids), pa.string())})
    with tx.batches(audit_uuids=audit_uuids):
        tx.create_temp_table(
            "cdrs_before",
            f"""
            SELECT uuid, call_date, has_recording, {columns} FROM cdrs
            WHERE account = ? AND uuid IN (SELECT uuid FROM audit_uuids)
            """,  # noqa: S608 - constant columns
            [account],
        )
    if not tx.scalar("SELECT count(*) FROM cdrs_before"):
        tx.drop_temp_table("cdrs_before")
        return False
    return True


def record_changes(
    tx: Transaction,
    *,
    seen_at: dt.datetime,
    recordings_dir: Path | None,
    account: str,
) -> AuditResult:
    """Write a ``cdr_changes`` row per audited field that the batch changed, and mirror
    recording deletions, after :func:`snapshot_before_write` returned True.

    Args:
        seen_at: when the new values were fetched (the rows' ``seen_at``).
        recordings_dir: BULUTFON_DATA_DIR when recording deletions are mirrored: a
            re-fetched call without a recording any more loses its ``call_recordings``
            row and its file (deleted before the caller commits). None: keep them.

    Returns:
        What was written and deleted.
    """
    # The batch's rows as written, once: joining each audited field's select with the
    # whole of cdrs (no index on DuckDB) built one hash table per field over every stored
    # call, which ran out of DuckDB's memory limit on a refetch into a 20,000-call table.
    columns_after = ", ".join(AUDITED_FIELDS)
    tx.create_temp_table(
        "cdrs_after",
        f"""
        SELECT uuid, call_date, has_recording, {columns_after} FROM cdrs
        WHERE account = ? AND uuid IN (SELECT uuid FROM cdrs_before)
        """,  # noqa: S608 - constant columns
        [account],
    )
    # One statement per field: a UNION ALL of them all held every branch's hash table at
    # once, past DuckDB's memory limit next to a big batch's pending writes.
    columns = "account, uuid, call_date, field, old_value, new_value, detected_at, seen_at"
    changes = 0
    for name in AUDITED_FIELDS:
        changes += tx.write(
            f"""
            INSERT INTO {schema.cdr_changes.name} ({columns})
            SELECT CAST(? AS VARCHAR), c.uuid, c.call_date, '{name}' AS field,
                   {_text_sql(tx, name, "b")} AS old_value,
                   {_text_sql(tx, name, "c")} AS new_value,
                   f.detected_at, CAST(? AS TIMESTAMPTZ) AS seen_at
            FROM cdrs_before AS b JOIN cdrs_after AS c ON c.uuid = b.uuid
            LEFT JOIN {schema.cdr_refetch.name} AS f ON f.uuid = c.uuid AND f.account = ?
            WHERE b.{name} IS DISTINCT FROM c.{name}
            """,  # noqa: S608 - identifiers from AUDITED_FIELDS and the schema
            [account, seen_at, account],
        )
    deleted = 0
    if recordings_dir is not None:
        removed = tx.execute(
            f"""
            DELETE FROM {schema.call_recordings.name}
            WHERE account = ? AND cdr_uuid IN (
                SELECT c.uuid FROM cdrs_before AS b JOIN cdrs_after AS c ON c.uuid = b.uuid
                WHERE NOT c.has_recording)
            RETURNING cdr_uuid, path
            """,  # noqa: S608 - table name from the schema
            [account],
        ).fetchall()
        for uuid, path in removed:
            _delete_recording_file(recordings_dir, path, uuid)
        if removed:
            removed_recordings = pa.table(
                {
                    "uuid": pa.array([u for u, _ in removed], pa.string()),
                    "path": pa.array([p for _, p in removed], pa.string()),
                }
            )
            with tx.batches(removed_recordings=removed_recordings):
                tx.execute(
                    f"""
                    INSERT INTO {schema.cdr_changes.name} ({columns})
                    SELECT c.account, r.uuid, c.call_date, '{RECORDING_FILE_FIELD}' AS field,
                           r.path AS old_value, NULL AS new_value,
                           f.detected_at, CAST(? AS TIMESTAMPTZ) AS seen_at
                    FROM removed_recordings AS r
                    JOIN cdrs AS c ON c.account = ? AND c.uuid = r.uuid
                    LEFT JOIN {schema.cdr_refetch.name} AS f
                        ON f.account = c.account AND f.uuid = r.uuid
                    """,  # noqa: S608 - identifiers from the constants above
                    [seen_at, account],
                )
            changes += len(removed)
            deleted = len(removed)
    tx.drop_temp_table("cdrs_before")
    tx.drop_temp_table("cdrs_after")
    return AuditResult(changes=changes, recordings_deleted=deleted)


def _delete_recording_file(data_dir: Path, relative: str, uuid: str) -> None:
    """Delete a recording file named by a ``call_recordings`` row (relative to the data
    folder); a file already gone is fine, a path outside the folder is left alone."""
    root = data_dir.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        log.warning(
            "recording of %s: path %s is outside the data folder; not deleted", uuid, relative
        )
        return
    target.unlink(missing_ok=True)
    log.info("deleted the recording of %s, removed at the source", uuid)


def clear_refetch(tx: Transaction, uuids: Iterable[str], *, account: str) -> None:
    """Delete ``account``'s ``_cdr_refetch`` marks of calls whose detail this transaction
    wrote (or rejected: a call whose detail now fails is not fetched again on every sync)."""
    values = list(uuids)
    if not values:
        return
    fetched_uuids = pa.table({"uuid": pa.array(values, pa.string())})
    with tx.batches(fetched_uuids=fetched_uuids):
        tx.execute(
            f"DELETE FROM {schema.cdr_refetch.name} "  # noqa: S608 - table name from the schema
            "WHERE account = ? AND uuid IN (SELECT uuid FROM fetched_uuids)",
            [account],
        )
