"""Detail batches written while the next batch is fetched and normalised.

A detail load alternates two kinds of work: the client's (fetching, decoding and
normalising a batch) and the database's (``COPY``, upserts, the ``COMMIT``'s flush). On
an embedded warehouse (DuckDB) both run in this process, one after the other. On a server
(PostgreSQL) the database's work runs in the server's own processes, so a
:class:`DetailWriter` hands each batch's :func:`~.details.load_details` to one background
thread and lets the caller go on with the next batch: the client and the server then work
at the same time instead of taking turns.

What does not change:

* Each batch is still ONE transaction (raw payloads, rows, rejects, audit), written by the
  same :func:`~.details.load_details`. A crash at any instant leaves every batch either
  committed whole or not at all; the next load fetches the calls without a ``cdrs`` row.
* At most one batch is in flight, and batches commit in the order submitted.
* :meth:`DetailWriter.wait` returns once the batch in flight is committed (its ``then``
  ran, in the caller's thread) or raises the exception its write raised, unchanged (a
  ``WarehouseError``, an injected fault). :meth:`~DetailWriter.submit` waits first, and so
  does leaving the ``with`` block: when the block ends, every batch submitted is committed.
* On DuckDB, :meth:`~DetailWriter.submit` writes the batch before it returns, exactly as a
  plain :func:`~.details.load_details` call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import TracebackType

from bulutfon_pipeline.normalize import NormalizedDetails, Reject
from bulutfon_pipeline.warehouse.backend import Backend
from bulutfon_pipeline.warehouse.details import DetailLoadResult, RawPayload, load_details

__all__ = ["DetailWriter"]

log = logging.getLogger(__name__)

Then = Callable[[DetailLoadResult], None]


class DetailWriter:
    """Writes detail batches through :func:`~.details.load_details`, in the background on a
    server warehouse (see the module). Use it as a context manager.

    Args:
        db: the warehouse's backend; ``db.is_server`` decides whether batches are written
            in the background.
        mirror_recording_deletes: passed to every :func:`~.details.load_details`.
        account: the account whose details every batch holds.
    """

    def __init__(
        self, db: Backend, *, mirror_recording_deletes: Path | None = None, account: str
    ) -> None:
        self.db = db
        self.mirror_recording_deletes = mirror_recording_deletes
        self.account = account
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="detail-writer")
            if db.is_server
            else None
        )
        self._in_flight: tuple[Future[DetailLoadResult], Then | None] | None = None

    def submit(
        self,
        raw: Sequence[tuple[str, RawPayload]],
        normalized: NormalizedDetails,
        *,
        fetched_at: datetime,
        detail_rejects: Sequence[Reject] = (),
        then: Then | None = None,
    ) -> None:
        """Write one batch (the arguments of :func:`~.details.load_details`); ``then`` gets
        its result once it is committed. Waits for the batch in flight first.

        Raises:
            WarehouseError: the batch in flight failed (it was rolled back), or on DuckDB
                this batch did.
        """
        self.wait()
        write = functools.partial(
            load_details,
            self.db,
            raw,
            normalized,
            fetched_at=fetched_at,
            detail_rejects=detail_rejects,
            mirror_recording_deletes=self.mirror_recording_deletes,
            account=self.account,
        )
        if self._pool is None:
            result = write()
            if then is not None:
                then(result)
            return
        self._in_flight = (self._pool.submit(write), then)

    def wait(self) -> None:
        """Return once the batch in flight (if any) is committed and its ``then`` ran.

        Raises:
            Exception: what the batch's write raised (the batch was rolled back).
        """
        if self._in_flight is None:
            return
        future, then = self._in_flight
        self._in_flight = None
        result = future.result()
        if then is not None:
            then(result)

    def close(self) -> None:
        """Wait for the batch in flight, then stop the thread."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def __enter__(self) -> DetailWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # The caller failed: the batch in flight still ends (committed or rolled back, both
        # safe) before the caller's error propagates; a failure of its own is logged.
        try:
            self.close()
        except Exception as failure:
            log.warning("the detail batch in flight failed as well: %s", failure)
