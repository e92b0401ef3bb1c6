"""A small process supervisor for ``bulutfon-pipeline ui``: its children stop with it.

``ui`` runs the simulator and ``dagster dev``, which runs the webserver, the daemon, a
code server and the run workers. A service manager stops ``ui`` with ``kill -TERM <pid>``;
a terminal's Ctrl-C may reach only ``ui`` too. Either signal must stop the whole tree, so:

* each child starts in its own session (so its own process group), where everything it
  starts stays unless it asks otherwise: ``killpg`` reaches the whole subtree;
* SIGINT and SIGTERM to ``ui`` are handled explicitly (a shell starts a background job
  with SIGINT ignored, and Python then installs no handler for it): the supervisor sends
  SIGTERM to each child (``dagster dev`` then shuts its services down itself), waits
  up to ``grace_s`` for every process of each group to be gone, then SIGKILLs what is left;
* on Linux each child asks the kernel for SIGTERM when ``ui`` itself dies, even by
  SIGKILL (``PR_SET_PDEATHSIG``), so nothing is orphaned then either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType, TracebackType

__all__ = ["ProcessTree"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long the children get to stop on SIGTERM before the rest of their groups is killed.
DEFAULT_GRACE_S = 6.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Loaded here, in the parent: loading a library in a forked child of a threaded parent can
# deadlock.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _child_setup(parent: int) -> Callable[[], None]:
    def setup() -> None:
        # Undo an inherited "ignore SIGINT" (a shell's background job): dagster dev maps
        # SIGTERM onto SIGINT's disposition, so it would ignore both.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the line above
                os.kill(os.getpid(), signal.SIGTERM)

    return setup


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of the group we may not signal: still there
        return True
    return True


class ProcessTree:
    """Children that stop together, when the supervisor is signalled or leaves its block.

    Use as a context manager: entering installs the SIGINT/SIGTERM handlers, leaving
    stops every child (and restores the handlers).
    """

    def __init__(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.grace_s = grace_s
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.signum: int | None = None
        self._wake = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> ProcessTree:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self._wake.set()

    def spawn(self, name: str, argv: Sequence[str], *, env: Mapping[str, str]) -> None:
        """Start ``argv`` as a child in its own session."""
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            start_new_session=True,
            preexec_fn=_child_setup(os.getpid()),  # before any thread of ours starts
        )
        self.children.append((name, proc))

    def wait(self, poll_s: float = 0.5) -> tuple[str, int] | None:
        """Block until a stop signal (returns None) or a child exits (returns its name
        and exit status)."""
        while self.signum is None:
            for name, proc in self.children:
                if proc.poll() is not None:
                    return name, proc.returncode
            self._wake.wait(poll_s)
        return None

    def stop(self) -> None:
        """SIGTERM every child; after ``grace_s``, SIGKILL whatever of their groups is left."""
        groups = [proc.pid for _, proc in self.children]  # session leaders: pgid == pid
        for _, proc in self.children:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            for _, proc in self.children:
                proc.poll()  # reap the leaders, or their zombies keep the groups "alive"
            if not any(_group_alive(pgid) for pgid in groups):
                return
            time.sleep(0.1)
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for _, proc in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
