"""Whether SIGINT or SIGTERM came during a sync: read from the signal module's wakeup fd.

``runner.interrupts.stop_cleanly`` owns the signal handling; this module holds what the
lower floors ask. A raising signal handler alone does not stop a sync reliably: CPython
may run the handler inside a finalizer (an aiohttp response's ``__del__``), where the
exception is printed and dropped, and DuckDB turns it into ``RuntimeError('Query
interrupted')`` when it lands in a query. The wakeup fd records every signal whichever
handler runs, so the loop that fetches details asks it between items (:func:`until_stopped`)
and stops within one item of the signal. Outside ``stop_cleanly`` (the UI, the daemon)
nothing is watched and the call costs nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = [
    "STOP_SIGNALS",
    "StopRequestedError",
    "Watch",
    "raise_if_stopped",
    "until_stopped",
    "watching",
]

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequestedError(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, like KeyboardInterrupt: no ``except
    Exception`` on the way may swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Watch:
    """The read end of the wakeup pipe and the first stop signal read from it."""

    def __init__(self, read_fd: int) -> None:
        self.read_fd = read_fd
        self.signum: int | None = None

    def received(self) -> int | None:
        """The first SIGINT or SIGTERM delivered since the watch began, if any."""
        while self.signum is None:
            try:
                data = os.read(self.read_fd, 256)
            except BlockingIOError:
                break
            if not data:
                break
            self.signum = next((n for n in data if n in STOP_SIGNALS), None)
        return self.signum


_watch: Watch | None = None


def watching(watch: Watch | None) -> None:
    """Make ``watch`` the one :func:`raise_if_stopped` reads (``None``: none)."""
    global _watch
    _watch = watch


def raise_if_stopped() -> None:
    """Raise :class:`StopRequestedError` if a stop signal came (whatever became of the
    exception its handler raised)."""
    watch = _watch
    if watch is not None and (signum := watch.received()) is not None:
        raise StopRequestedError(signum)


def until_stopped(items: Iterable[T]) -> Iterator[T]:
    """``items``, raising :class:`StopRequestedError` before the next one once a stop
    signal came."""
    for item in items:
        raise_if_stopped()
        yield item
