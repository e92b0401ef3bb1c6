"""Runs one measured command and reaps it with ``wait4``, from a process of its own.

A child's peak RSS (``ru_maxrss``) on Linux counts the process it was forked from: the
kernel records the parent's high-water mark when the child runs ``exec`` (a ``/bin/true``
started by a 500 MB Python process reports 513 MB). The harness grows (the load section's
datasets took it to 461 MB), so every child it started afterwards reported at least that.
This script is small (the standard library only) and starts the command itself, so the
command's figure is its own: ``python benchmarks/reaper.py RESULT CMD...`` writes
``{"seconds", "peak_rss_kb", "cpu_seconds", "returncode"}`` to RESULT (``returncode`` as
``subprocess`` gives it: -N after signal N) and exits with the command's exit code (128 + N
after signal N). The command dies with it (``PR_SET_PDEATHSIG``), so a
harness that kills it on a timeout kills the command too.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_the_reaper() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> int:
    result, cmd = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, preexec_fn=_die_with_the_reaper)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda n, _frame: child.send_signal(n))
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(result, "w") as out:
        json.dump({"seconds": seconds, "peak_rss_kb": usage.ru_maxrss,
                   "cpu_seconds": usage.ru_utime + usage.ru_stime, "returncode": code},
                  out)  # fmt: skip
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
