"""Call details: ``raw_cdr_details``, ``cdrs``, ``call_flow_steps``, ``originations``, and
which listed calls still wait for theirs.

One batch of fetched details is written in ONE transaction (:func:`load_details`): the raw
payloads, the normalised rows, the batch's rejects, and the deletion of rejects that the
batch supersedes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from bulutfon_pipeline import jsonio
from bulutfon_pipeline.faults import crash_point
from bulutfon_pipeline.normalize import NormalizedDetails, Reject
from bulutfon_pipeline.warehouse import changes, schema
from bulutfon_pipeline.warehouse._common import utc
from bulutfon_pipeline.warehouse.backend import (
    KEYS_SQL,
    Backend,
    Transaction,
    json_array,
    to_arrow,
    with_account,
)
from bulutfon_pipeline.warehouse.errors import WarehouseError
from bulutfon_pipeline.warehouse.rejects import DETAIL_STAGES, delete_superseded, write_rejects

__all__ = [
    "DetailLoadResult",
    "RawPayload",
    "load_details",
    "raw_payloads",
    "rewrite_details",
]

RawPayload = Mapping[str, Any] | str | bytes


@dataclass(frozen=True)
class DetailLoadResult:
    """What :meth:`Warehouse.load_details` did.

    Attributes:
        new: calls without a ``cdrs`` row before.
        updated: calls whose ``cdrs`` row (and child rows) were replaced.
        rejected: rejects written (``normalize`` and ``detail`` stages).
        raw_stored: raw payloads upserted into ``raw_cdr_details``.
        call_flow_steps: step rows inserted.
        originations: origination rows inserted.
        changes: ``cdr_changes`` rows written (fields of stored calls that changed,
            recording files deleted).
        recordings_deleted: recording files (and rows) deleted, removed at the source.
    """

    new: int
    updated: int
    rejected: int
    raw_stored: int
    call_flow_steps: int
    originations: int
    changes: int = 0
    recordings_deleted: int = 0


def _payload_text(payload: RawPayload) -> str:
    """The payload's JSON text, known valid: stored as the JSON type without the
    database parsing it again (``json_array``)."""
    if isinstance(payload, jsonio.JSONObject):  # the exact text the client received
        return payload.text
    if isinstance(payload, bytes | str):
        jsonio.decode(payload)  # JSONDecodeError (a ValueError) if it is not JSON
        return payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return jsonio.encode_text(payload)


def load_details(
    db: Backend,
    raw: Sequence[tuple[str, RawPayload]],
    normalized: NormalizedDetails,
    *,
    fetched_at: datetime,
    detail_rejects: Sequence[Reject] = (),
    mirror_recording_deletes: Path | None = None,
    account: str,
) -> DetailLoadResult:
    """Load one batch of ``account``'s fetched details in ONE transaction.

    Upserts ``raw_cdr_details`` for every fetched payload, upserts ``cdrs``, replaces the
    ``call_flow_steps``/``originations`` rows of the loaded calls, writes the
    ``normalize`` and ``detail`` rejects and drops earlier such rejects of the calls that
    now loaded. Loading the same batch twice leaves the same tables (bar
    ``cdrs.loaded_at``). Calls that had a ``cdrs`` row get a ``cdr_changes`` row per field
    that changed, and lose their ``_cdr_refetch`` mark
    (:mod:`~bulutfon_pipeline.warehouse.changes`), in the same transaction.

    Args:
        raw: ``(uuid, payload)`` per fetched detail; the payload as decoded JSON or as its
            JSON text (text avoids re-encoding).
        normalized: :func:`~bulutfon_pipeline.normalize.normalize_details` of them.
        fetched_at: when the batch was fetched (aware).
        detail_rejects: failures of the fetch itself (stage ``detail``).
        mirror_recording_deletes: BULUTFON_DATA_DIR, to delete the ``call_recordings`` row
            and file of a stored call that no longer has a recording; None keeps them.

    Returns:
        Counts of new/updated calls, rejects and rows written.

    Raises:
        WarehouseError: the load failed and was rolled back.
    """
    fetched_at = utc(fetched_at, "fetched_at")
    raw_rows: dict[str, str] = {}
    for uuid, payload in raw:
        try:
            raw_rows[uuid] = _payload_text(payload)
        except ValueError as exc:
            raise WarehouseError(f"raw payload of {uuid} is not JSON: {exc}") from exc
    raw_batch = pa.table(
        {
            "account": pa.array([account] * len(raw_rows), pa.string()),
            "uuid": pa.array(list(raw_rows), pa.string()),
            "fetched_at": pa.array([fetched_at] * len(raw_rows), pa.timestamp("us", "UTC")),
            "payload": json_array(list(raw_rows.values())),
        }
    )
    stored = None
    with db.transaction() as tx:
        # Overlapping runs (the weekly reconcile and the refresh on PostgreSQL) write their
        # batches in turn: else both may find a call unstored and insert it twice. Per
        # account: two accounts' loads never write the same rows, so they write at once.
        tx.take_turns(f"details {account}")
        if raw_rows:
            stored = tx.scalar(
                "SELECT count(*) FROM raw_cdr_details "  # noqa: S608
                f"WHERE account = ? AND uuid IN ({KEYS_SQL})",
                [account, list(raw_rows)],
            )
            if stored:
                with tx.batches(raw_batch=raw_batch):
                    tx.upsert(schema.raw_cdr_details, "raw_batch")
            else:  # first fetch of every call in the batch: straight in (COPY on PostgreSQL)
                tx.append(schema.raw_cdr_details, raw_batch)
        # A cdrs row is only ever written with, or after, its call's raw payload, and
        # raw payloads are never deleted: no raw row stored means no cdrs row either,
        # which spares a scan of cdrs per batch (about 3 % of a first load).
        none_stored = stored == 0 and set(normalized.cdrs["uuid"]) <= raw_rows.keys()
        audit = not none_stored and changes.snapshot_before_write(
            tx, list(normalized.cdrs["uuid"]), account=account
        )
        result = write_details(
            tx, normalized, detail_rejects, none_stored=none_stored, account=account
        )
        audited = changes.AuditResult()
        if audit:
            audited = changes.record_changes(
                tx, seen_at=fetched_at, recordings_dir=mirror_recording_deletes, account=account
            )
        if not none_stored or detail_rejects:
            changes.clear_refetch(
                tx,
                [*raw_rows, *(r.uuid for r in detail_rejects if r.uuid is not None)],
                account=account,
            )
        crash_point("details_write", tx.write_failure)
    return DetailLoadResult(
        new=result.new,
        updated=result.updated,
        rejected=result.rejected,
        raw_stored=len(raw_rows),
        call_flow_steps=result.call_flow_steps,
        originations=result.originations,
        changes=audited.changes,
        recordings_deleted=audited.recordings_deleted,
    )


def rewrite_details(
    db: Backend, normalized: NormalizedDetails, *, account: str
) -> DetailLoadResult:
    """Write re-normalised details of ``account``'s stored payloads, in one transaction.

    ``raw_cdr_details`` stays as it is; ``cdrs``, their child rows and the ``normalize``
    rejects are rewritten as :func:`load_details` writes them (``raw_stored`` is 0).
    """
    with db.transaction() as tx:
        return write_details(tx, normalized, (), account=account)


def write_details(
    tx: Transaction,
    normalized: NormalizedDetails,
    detail_rejects: Sequence[Reject],
    *,
    none_stored: bool = False,
    account: str,
) -> DetailLoadResult:
    """Write the batch's rows (``account``'s) in the caller's transaction; ``none_stored``:
    the caller knows none of its calls has a ``cdrs`` row yet."""
    loaded_at = datetime.now(UTC)
    cdrs = normalized.cdrs
    steps = normalized.call_flow_steps
    originations = normalized.originations
    if cdrs["uuid"].duplicated().any():  # normalize dedupes; guard hand-made batches
        cdrs = cdrs.drop_duplicates("uuid", keep="last")
        steps = steps.drop_duplicates(["cdr_uuid", "step_index"], keep="last")
        originations = originations.drop_duplicates(
            ["cdr_uuid", "step_index", "attempt_index"], keep="last"
        )
    new = updated = 0
    if len(cdrs):
        cdr_rows = with_account(to_arrow(cdrs.assign(loaded_at=loaded_at), schema.cdrs), account)
        step_rows = with_account(to_arrow(steps, schema.call_flow_steps), account)
        origination_rows = with_account(to_arrow(originations, schema.originations), account)
        if none_stored:
            # None of these calls is stored, so neither are their child rows (they are only
            # ever written with their cdrs row, in one transaction): every row goes straight
            # into its table, without a batch table, an upsert or an anti-join.
            new = len(cdrs)
            _append_calls(tx, cdr_rows, step_rows, origination_rows)
            delete_superseded(tx, KEYS_SQL, DETAIL_STAGES, [list(cdrs["uuid"])], account=account)
        else:
            with tx.batches(cdr_batch=cdr_rows):
                existing = tx.scalar(
                    "SELECT count(*) FROM cdrs "
                    "WHERE account = ? AND uuid IN (SELECT uuid FROM cdr_batch)",
                    [account],
                )
                new, updated = len(cdrs) - existing, existing
                if not existing:  # as above: the upserts reduce to inserts
                    _append_calls(tx, cdr_rows, step_rows, origination_rows)
                else:
                    with tx.batches(step_batch=step_rows, origination_batch=origination_rows):
                        _replace_calls(tx, account)
                delete_superseded(tx, "SELECT uuid FROM cdr_batch", DETAIL_STAGES, account=account)
    rejected = write_rejects(tx, [*normalized.rejects, *detail_rejects], account=account)
    return DetailLoadResult(
        new=new,
        updated=updated,
        rejected=rejected,
        raw_stored=0,
        call_flow_steps=len(steps),
        originations=len(originations),
    )


def _append_calls(tx: Transaction, cdrs: pa.Table, steps: pa.Table, originations: pa.Table) -> None:
    """Append calls none of which is stored (their upserts' anti-joins against the whole
    tables were most of a batch's write time, BENCHMARKS.md)."""
    tx.append(schema.cdrs, cdrs)
    tx.append(schema.call_flow_steps, steps)
    tx.append(schema.originations, originations)


def _replace_calls(tx: Transaction, account: str) -> None:
    """Upsert the registered batches of ``account``'s calls that may be stored already."""
    tx.upsert(schema.cdrs, "cdr_batch")
    # The child rows of each loaded call become exactly the batch's rows. Same effect as
    # delete-all + insert, but DuckDB makes a COMMIT that re-inserts deleted primary keys
    # very slow (~10 s per 1M rows), so: delete the rows the new flow no longer has,
    # then upsert the others.
    tx.execute(
        """
        DELETE FROM originations AS o
        WHERE o.account = ? AND o.cdr_uuid IN (SELECT uuid FROM cdr_batch)
          AND NOT EXISTS (
              SELECT 1 FROM origination_batch AS b
              WHERE b.cdr_uuid = o.cdr_uuid AND b.step_index = o.step_index
                AND b.attempt_index = o.attempt_index)
        """,
        [account],
    )
    tx.execute(
        """
        DELETE FROM call_flow_steps AS s
        WHERE s.account = ? AND s.cdr_uuid IN (SELECT uuid FROM cdr_batch)
          AND NOT EXISTS (
              SELECT 1 FROM step_batch AS b
              WHERE b.cdr_uuid = s.cdr_uuid AND b.step_index = s.step_index)
        """,
        [account],
    )
    tx.upsert(schema.call_flow_steps, "step_batch")
    tx.upsert(schema.originations, "origination_batch")


def raw_payloads(
    db: Backend,
    uuids: Sequence[str] | None = None,
    *,
    after: str | None = None,
    limit: int,
    account: str,
) -> list[tuple[str, str]]:
    """``account``'s stored raw payloads as ``(uuid, JSON text)``, by uuid, at most
    ``limit`` of them.

    Args:
        uuids: only these calls; default every stored payload.
        after: only uuids after this one (to page through them).
    """
    where = ["account = ?"]
    params: list[Any] = [account]
    if uuids is not None:
        where.append("uuid IN (SELECT uuid FROM wanted)")
    if after is not None:
        where.append("uuid > ?")
        params.append(after)
    condition = f"WHERE {' AND '.join(where)}"
    wanted = pa.table({"uuid": pa.array(list(uuids or ()), pa.string())})
    with db.transaction() as tx, tx.batches(wanted=wanted):
        rows = tx.execute(
            f"SELECT uuid, CAST(payload AS VARCHAR) FROM raw_cdr_details {condition} "  # noqa: S608
            "ORDER BY uuid LIMIT ?",
            [*params, limit],
        ).fetchall()
    return [(uuid, text) for uuid, text in rows]


# --- what is left to fetch ---------------------------------------------------------------
