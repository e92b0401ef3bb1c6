"""Worker processes held to a CPU quota of their own, as if each had a machine of that size.

The benchmarks run on one small machine, where the simulator and the database server share
the cores with the workers. Two workers there are bound by the machine, not by their own
CPU, so they cannot show how the work scales when each worker's CPU is the limit. A Linux
cgroup's CPU quota (``cpu.cfs_quota_us`` in cgroup v1, ``cpu.max`` in v2) gives each
worker process, and every thread it starts, at most ``cores`` CPUs' time, whatever the
rest of the machine does. Creating cgroups needs root; without it, :func:`quota_groups`
yields ``None`` and the caller skips its quota cases.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


@dataclass(frozen=True)
class QuotaGroup:
    """One cgroup with its quota; :meth:`join` puts the calling process in it (a
    ``preexec_fn``: the child joins before it runs anything)."""

    path: Path

    def join(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def throttled_s(self) -> float:
        """How long the group's processes waited for their quota, in seconds."""
        stats = dict(
            line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line
        )
        if "throttled_time" in stats:  # v1: nanoseconds
            return int(stats["throttled_time"]) / 1e9
        return int(stats.get("throttled_usec", 0)) / 1e6


def _root() -> tuple[Path, Callable[[Path, float], None]] | None:
    """The cgroup folder to make groups in, and how to set a group's quota; ``None`` when
    this process cannot (no CPU controller, or not root)."""

    def v1(path: Path, cores: float) -> None:
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))

    def v2(path: Path, cores: float) -> None:
        (path / "cpu.max").write_text(f"{int(cores * PERIOD_US)} {PERIOD_US}")

    if (V1 / "cpu.cfs_quota_us").exists() and os.access(V1, os.W_OK):
        return V1, v1
    controllers = V2 / "cgroup.subtree_control"
    writable = controllers.exists() and os.access(V2, os.W_OK)
    if writable and "cpu" in controllers.read_text().split():
        return V2, v2
    return None


@contextlib.contextmanager
def quota_groups(count: int, cores: float, name: str) -> Iterator[list[QuotaGroup] | None]:
    """``count`` cgroups, each held to ``cores`` CPUs; ``None`` where cgroups cannot be
    made. The groups are removed on exit (their processes must have ended)."""
    found = _root()
    if found is None:
        yield None
        return
    root, set_quota = found
    groups: list[QuotaGroup] = []
    try:
        try:
            for i in range(count):
                path = root / f"bulutfon_bench_{name}_{os.getpid()}_{i}"
                path.mkdir()
                groups.append(QuotaGroup(path))
                set_quota(path, cores)
        except OSError:  # e.g. a read-only cgroup tree in a container
            yield None
            return
        yield groups
    finally:
        for group in groups:
            with contextlib.suppress(OSError):
                group.path.rmdir()
