"""Server replies taken up at once by a thread that waits on PostgreSQL.

A detail load runs two threads in one interpreter (``detail_writer``): the caller decodes
and normalises the next batch, holding the GIL for long stretches (msgspec and pandas do
not release it), while the writer's thread waits on the server. When a reply arrives, the
waiting thread must take the GIL back, and by default waits up to
``sys.getswitchinterval()`` (5 ms) before the busy thread is asked to let go. A batch has
about 13 replies (``BEGIN``, the advisory lock, the stored check, two per ``COPY``,
``COMMIT``), so up to about 65 ms of a batch whose server work takes about 90, on the
chain of batches that bounds a load's wall time (a reply that comes back at once, such as
a ``SELECT 1``'s, does not lose the GIL at all).

:class:`QuickReplies` (the backend's connections) lowers the interval to
:data:`SWITCH_INTERVAL_S` only while one of its threads waits on the server (process-wide,
as the interpreter has one setting; the previous value comes back when the last waiting
thread has its reply): that is all the hand-off needs, and threads that all run Python
keep the default. (0.5 ms for as long as a writer thread existed measured slower in three
pairs on a loaded machine; ``benchmarks/ANALYSIS.md``.) Speed only: what is sent, and when
it is committed, does not change.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["SWITCH_INTERVAL_S", "QuickReplies"]

#: The interpreter's switch interval while a thread waits on the server.
SWITCH_INTERVAL_S = 0.0005

_lock = threading.Lock()
_waiting = 0
_saved = 0.0


def _lower() -> None:
    global _waiting, _saved
    with _lock:
        if _waiting == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved, SWITCH_INTERVAL_S))
        _waiting += 1


def _restore() -> None:
    global _waiting
    with _lock:
        _waiting -= 1
        if _waiting == 0:
            sys.setswitchinterval(_saved)


class QuickReplies:
    """A mixin for a psycopg connection class whose waits on the server lower the switch
    interval (see the module): every query, ``COPY`` and commit of psycopg waits through
    ``Connection.wait``. Mixed in by ``postgres_backend``, the one module importing psycopg."""

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        _lower()
        try:
            return super().wait(*args, **kwargs)  # type: ignore[misc]
        finally:
            _restore()
