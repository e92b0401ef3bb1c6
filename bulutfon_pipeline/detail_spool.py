"""Fetched details kept on disk until their account's turn to load them.

Accounts loading in threads of one process (a multi-account ``sync``) each fetch at their
own rate limit, so a worker needs many of them at once to use its CPU; but every account
that normalises and writes at once costs the worker memory (its batch, its DuckDB
transaction, the allocators' pages): 50 accounts at once peaked at 1.5x the memory of 10.
On an embedded warehouse their writes all go to one file anyway. So there, each
account fetches at its full rate into a spool, a temporary file next to the warehouse,
and only ``account_threads.ACCOUNTS_WRITING_AT_ONCE`` accounts at a time load what they
spooled (:func:`in_turns`): while they fetch, whenever the turn is free (session 37), and
at the end. Fetching many accounts at once costs little memory; the loads cost what one
load costs (``benchmarks/ANALYSIS.md``, session 32). An account's last
batch is made ready (decoded, normalised) before its turn, one account at a time, so the
loads that queue when the fetches end write while the next one gets ready (session 36).

A crash loses nothing: the spool is an unnamed file that goes with the process, and the
calls it held have no ``cdrs`` row yet, so the next load fetches them again.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import msgspec

from bulutfon_pipeline import jsonio
from bulutfon_pipeline.api.errors import BulutfonError
from bulutfon_pipeline.api.models import DetailResult

__all__ = ["DetailSpool", "in_turns"]

R = TypeVar("R")

#: Held by the account that makes its last batch ready ahead of its turn (``in_turns``),
#: until it has the turn: at most one batch waits ready beside the one being written.
_GETTING_READY = threading.Lock()

#: What a spooled record holds after its uuid: a detail with its exact text, a detail with
#: no text kept (encoded), or the error that failed the call.
_TEXT, _ENCODED, _ERROR = 0, 1, 2
_ENCODER = msgspec.json.Encoder()
_RECORD = msgspec.json.Decoder(tuple[str, int, str])


class DetailSpool:
    """Fetched details, in order, in an unnamed temporary file in ``folder``:
    :meth:`add` appends one, :meth:`drain` reads them all back and empties the spool.
    :meth:`close` deletes the file."""

    def __init__(self, folder: Path) -> None:
        # Unnamed: deleted by close(), or with the process.
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=folder, prefix="bulutfon-spool-")  # noqa: SIM115
        self.count = 0

    def add(self, result: DetailResult) -> None:
        """Append ``result``: its detail's JSON text (as received when kept), or its error."""
        payload = result.payload
        if payload is None:
            record = (result.uuid, _ERROR, str(result.error))
        elif isinstance(payload, jsonio.JSONObject):
            record = (result.uuid, _TEXT, payload.text)
        else:
            record = (result.uuid, _ENCODED, jsonio.encode_text(payload))
        self._file.write(_ENCODER.encode(record) + b"\n")  # JSON strings hold no newline
        self.count += 1

    def drain(self) -> Iterator[DetailResult]:
        """The details added since the last drain, in order, as :meth:`add` was given them
        (an error comes back as a :class:`BulutfonError` with the same message); the spool
        is empty once the iterator is exhausted. Add nothing before then."""
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            uuid, kind, text = _RECORD.decode(line)
            if kind == _ERROR:
                yield DetailResult(uuid, None, BulutfonError(text))
            elif kind == _TEXT:
                yield DetailResult(uuid, jsonio.JSONObject(jsonio.decode(text), text))
            else:
                yield DetailResult(uuid, jsonio.decode(text))
        self._file.seek(0)
        self._file.truncate()
        self.count = 0

    def close(self) -> None:
        """Delete the file (``contextlib.closing`` calls it)."""
        self._file.close()


def in_turns(
    results: Iterable[DetailResult],
    turns: threading.Semaphore,
    folder: Path,
    *,
    least: int,
    most: int,
    batch: int,
    ready: Callable[[Iterator[DetailResult]], R] | None = None,
) -> Generator[Iterator[DetailResult] | R, None, None]:
    """``results`` in segments, each yielded while this thread holds one of ``turns``.

    Results are spooled as they come. Whenever at least ``least`` wait and a turn is free
    (without waiting for one), they are yielded: loads during the fetch use the turns
    while no one else wants them; at ``most`` waiting, the fetch waits for a turn; the
    last segment waits for one. The turn is released when the caller asks for the next
    segment, or closes this generator (do, with ``contextlib.closing``, when a segment's
    load fails).

    With ``ready``, a last segment of at most ``batch`` is given back as ``ready`` made it
    of the segment's details before the turn: one thread at a time does that, and holds
    on until it has its turn. So the next load's decoding and normalising (Python) runs
    while the turn's holder writes (mostly DuckDB's threads), and at most one segment
    waits ready.
    """
    with contextlib.closing(DetailSpool(folder)) as spool:
        for result in results:
            spool.add(result)
            if spool.count >= most:
                turns.acquire()
            elif spool.count < least or not turns.acquire(blocking=False):
                continue
            try:
                yield spool.drain()
            finally:
                turns.release()
        if spool.count and ready is not None and spool.count <= batch:
            with _GETTING_READY:
                made = ready(spool.drain())
                turns.acquire()
            try:
                yield made
            finally:
                turns.release()
        elif spool.count:
            with turns:
                yield spool.drain()
