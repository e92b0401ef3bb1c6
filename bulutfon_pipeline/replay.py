"""Re-normalise the stored raw payloads, without the API: the load to run after a fix to
the normaliser.

``raw_cdr_details`` keeps every detail exactly as the API sent it, so a call loaded by an
older, wrong normaliser can be corrected from it: :func:`replay_details` reads the
payloads in batches (by uuid), normalises them again and rewrites ``cdrs``, their
``call_flow_steps`` and ``originations`` and their ``normalize`` rejects, one transaction
per batch. ``raw_cdr_details`` is left as it is. A replay killed half-way leaves each
batch either rewritten or as it was; running it again finishes the job.

Lives above the warehouse so that the warehouse never imports the normaliser's functions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bulutfon_pipeline import jsonio
from bulutfon_pipeline.api.v2 import DEFAULT_FIELD_MAP, rename_v2_fields
from bulutfon_pipeline.normalize import normalize_details
from bulutfon_pipeline.settings import DEFAULT_DETAIL_BATCH_SIZE
from bulutfon_pipeline.warehouse import Warehouse

__all__ = ["ReplaySummary", "replay_details"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplaySummary:
    """What :func:`replay_details` did.

    Attributes:
        payloads: stored payloads read and normalised again.
        updated: calls whose ``cdrs`` row (and child rows) were rewritten.
        new: calls that had a payload but no ``cdrs`` row before (an older normaliser
            had rejected them).
        rejected: ``normalize`` rejects written (payloads that still do not normalise).
        batches: transactions.
    """

    payloads: int = 0
    updated: int = 0
    new: int = 0
    rejected: int = 0
    batches: int = 0
    seconds: float = 0.0

    def plus(self, other: ReplaySummary) -> ReplaySummary:
        """Both replays' counts added up (one per account)."""
        return ReplaySummary(
            *(
                a + b
                for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)
            )
        )


def _unwrap_cdr(payload: Any) -> Any:
    """The inner ``cdr`` object when a whole detail response was stored."""
    if isinstance(payload, dict) and set(payload) == {"cdr"}:
        return payload["cdr"]
    return payload


def replay_details(
    warehouse: Warehouse,
    uuids: Sequence[str] | None = None,
    *,
    batch_size: int = DEFAULT_DETAIL_BATCH_SIZE,
    v2_field_map: Sequence[tuple[str, str]] = DEFAULT_FIELD_MAP,
) -> ReplaySummary:
    """Normalise stored raw payloads again and rewrite what they load into.

    Args:
        warehouse: the warehouse (schema in place).
        uuids: only these calls (those without a stored payload are skipped); default
            every stored payload.
        batch_size: payloads per transaction.
        v2_field_map: v2 field -> v1 name, for payloads the v2 API sent (they are
            stored as sent); a v1 payload has none of these fields and is read as is.

    Returns:
        Counts over every batch.

    Raises:
        WarehouseError: a batch failed and was rolled back (earlier batches stay).
    """
    started = time.monotonic()
    payloads = updated = new = rejected = batches = 0
    after: str | None = None
    with warehouse.session():
        while rows := warehouse.raw_payloads(uuids, after=after, limit=batch_size):
            normalized = normalize_details([
                rename_v2_fields(_unwrap_cdr(jsonio.decode(text)), v2_field_map)
                for _, text in rows
            ])  # fmt: skip
            result = warehouse.rewrite_details(normalized)
            payloads += len(rows)
            updated += result.updated
            new += result.new
            rejected += result.rejected
            batches += 1
            after = rows[-1][0]
            log.info("replayed %d payloads (up to %s)", payloads, after)
    return ReplaySummary(
        payloads=payloads,
        updated=updated,
        new=new,
        rejected=rejected,
        batches=batches,
        seconds=time.monotonic() - started,
    )
