"""Load the calls that webhooks pushed, through the detail load (plain Python, no dagster).

Why the detail endpoint rather than the pushed ``cdr``: the pushed object is a dialect
of its own that lacks fields the tables hold (``hangup_state`` as the API words it,
``missing_call``, ``call_price``, ``extension``, the ring groups' originations), so rows
built from it would differ from the same call loaded by the scan, and the next listing
scan would see a "change" and fetch it again, writing ``cdr_changes`` rows that never
happened. Fetching the detail costs one request per call and loads exactly the rows
(and the ``raw_cdr_details`` payload) the scan would, through the same code
(:func:`bulutfon_pipeline.loads.load_details` with an explicit uuid list). It also means
that nothing a post says reaches the warehouse unchecked: a post only names a call; the
API says what it is (no signature scheme is documented for webhooks).

A call whose detail cannot be fetched now (a 404 because the API has not caught up
with the hangup, or a fault that outlasted the retries) is *deferred*, not rejected:
it is left to the scheduled listing scan, which loads or rejects it like any other.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulutfon_pipeline.loads import DetailClient, load_details
from bulutfon_pipeline.settings import DEFAULT_DETAIL_BATCH_SIZE, LOCAL_TZ
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.backend import KEYS_SQL

__all__ = ["PushedLoadSummary", "load_pushed_calls"]

#: Constant SQL; its parameters are the account and the uuids, twice.
_LOADED_SQL = (
    f"SELECT uuid FROM cdrs WHERE account = ? AND uuid IN ({KEYS_SQL})"  # noqa: S608
    f" UNION SELECT uuid FROM load_rejects WHERE account = ? AND uuid IN ({KEYS_SQL})"
)


@dataclass
class PushedLoadSummary:
    """What one load of pushed calls did; :meth:`to_metadata` names its keys."""

    requested: int = 0
    #: Already in ``cdrs`` or ``load_rejects`` (loaded by the scan, or a replayed event).
    already_loaded: int = 0
    fetched: int = 0
    new: int = 0
    updated: int = 0
    rejected: int = 0
    #: Their detail could not be fetched now: left to the listing scan.
    deferred: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def plus(self, other: PushedLoadSummary) -> PushedLoadSummary:
        """The two loads' counts added up (one run loads several accounts' calls)."""
        return PushedLoadSummary(
            self.requested + other.requested,
            self.already_loaded + other.already_loaded,
            self.fetched + other.fetched,
            self.new + other.new,
            self.updated + other.updated,
            self.rejected + other.rejected,
            [*self.deferred, *other.deferred],
            self.seconds + other.seconds,
        )

    def to_metadata(self) -> dict[str, Any]:
        return {
            "calls_pushed": self.requested,
            "calls_already_loaded": self.already_loaded,
            "calls_fetched": self.fetched,
            "calls_new": self.new,
            "calls_updated": self.updated,
            "calls_rejected": self.rejected,
            "calls_deferred": len(self.deferred),
            "duration_s": round(self.seconds, 3),
        }


class _Deferring:
    """A :class:`DetailClient` that passes on fetched details and keeps failures aside."""

    def __init__(self, client: DetailClient) -> None:
        self._client = client
        self.failed: list[str] = []

    def fetch_details(self, uuids: Iterable[str]) -> Iterator[Any]:
        for result in self._client.fetch_details(uuids):
            if result.payload is None:
                self.failed.append(result.uuid)
            else:
                yield result


def _loaded(warehouse: Warehouse, uuids: Sequence[str]) -> set[str]:
    """The uuids of ``uuids`` that already have a ``cdrs`` or a ``load_rejects`` row of
    the warehouse's account."""
    account = warehouse.account
    frame = warehouse.fetch_frame(_LOADED_SQL, [account, list(uuids), account, list(uuids)])
    return {str(uuid) for uuid in frame["uuid"]}


def load_pushed_calls(
    client: DetailClient,
    warehouse: Warehouse,
    uuids: Sequence[str],
    *,
    batch_size: int = DEFAULT_DETAIL_BATCH_SIZE,
    mirror_recording_deletes: Path | None = None,
) -> PushedLoadSummary:
    """Fetch and load the details of the pushed ``calls`` not loaded yet.

    A call already in ``cdrs`` (or rejected) is not fetched: a replayed event, or a
    call the scan loaded first, changes nothing.

    Args:
        client: anything with ``fetch_details(uuids)`` (the Bulutfon client).
        warehouse: the target warehouse (schema must exist).
        uuids: the calls, from the inbox's hangups.
        batch_size: details per transaction.
        mirror_recording_deletes: as for :func:`~bulutfon_pipeline.loads.load_details`.

    Returns:
        The counts, with the uuids deferred to the scan.
    """
    started = time.monotonic()
    unique = list(dict.fromkeys(uuids))
    summary = PushedLoadSummary(requested=len(unique))
    if not unique:
        return summary
    loaded = _loaded(warehouse, unique)
    pending = [uuid for uuid in unique if uuid not in loaded]
    summary.already_loaded = len(loaded)
    if pending:
        today = dt.datetime.now(LOCAL_TZ).date()  # labels the detail summary only
        deferring = _Deferring(client)
        details = load_details(
            deferring,
            warehouse,
            start=today,
            end=today,
            batch_size=batch_size,
            mirror_recording_deletes=mirror_recording_deletes,
            uuids=pending,
        )
        summary.fetched, summary.new = details.fetched, details.new
        summary.updated, summary.rejected = details.updated, details.rejected
        summary.deferred = deferring.failed
    summary.seconds = time.monotonic() - started
    return summary
