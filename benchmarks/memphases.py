"""Peak RSS of a full ``bulutfon-pipeline sync`` split by phase (imports, listing, details).

The sync runs in a subprocess against the simulator in another process, as in
``syncbench.full_sync``; its RSS is sampled from ``/proc`` every 20 ms and each sample is
put in the phase the simulator's counters show (no listing page served yet: imports; no
detail served yet: listing; then details). The exact peak comes from ``wait4``.

    .venv/bin/python benchmarks/memphases.py 20000 100000

Prints one JSON line per size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import syncbench
from common import ROOT, load_now, simulator


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def phases(calls: int) -> dict[str, object]:
    """Peak RSS per phase and overall of a first sync of ``calls`` calls."""
    days = calls // syncbench.CALLS_PER_DAY
    db = syncbench._fresh(f"memphases_{calls}")
    peaks: dict[str, float] = {}
    with simulator(days=days, calls_per_day=syncbench.CALLS_PER_DAY) as sim:
        phase = "imports"
        done = threading.Event()

        def follow() -> None:  # the phase, from the simulator's counters, 4 times a second
            nonlocal phase
            while not done.wait(0.25):
                stats = sim.stats()
                if sum(stats["detail"].values()):
                    phase = "details"
                elif sum(stats["listing"].values()):
                    phase = "listing"

        load = load_now()
        started = time.perf_counter()
        process = subprocess.Popen(
            [syncbench.CLI, "sync", "--no-progress"], env=syncbench._env(sim, db, days),
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_mb(process.pid)
            if rss is not None:
                peaks[phase] = max(peaks.get(phase, 0.0), rss)
            time.sleep(0.02)
        done.set()
        follower.join()
        seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"sync failed ({code})")
    return {
        "calls": calls,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "sampled_peak_by_phase_mb": {name: round(mb, 1) for name, mb in peaks.items()},
        "seconds": round(seconds, 1),
        "load": load,
        "load_end": load_now(),
    }


if __name__ == "__main__":
    for size in sys.argv[1:] or ["20000"]:
        print(json.dumps(phases(int(size))), flush=True)
