"""Where a multi-account sync's memory is, over its run: one case of ``accounts.py``
whose ``sync`` samples itself every ``MEMSPLIT_EVERY_S`` seconds (1) from a thread:

* ``rss`` / ``anon``: the process's resident and anonymous resident MB (``/proc``);
* ``je_resident`` / ``je_allocated``: DuckDB's jemalloc, what it holds in RAM and what
  is allocated in it (read through ``duckdb_je_mallctl``, which DuckDB's Linux wheels
  export; absent elsewhere), so ``je_resident - je_allocated`` is freed memory jemalloc
  has not returned yet;
* ``malloc_arena`` / ``malloc_in_use`` / ``malloc_mmap``: glibc's malloc (``mallinfo2``):
  its arenas' size, what is allocated in them, its large mapped blocks;
* ``py_blocks``: Python objects allocated (``sys.getallocatedblocks``);
* ``threads``: the process's Python threads.

What is left of ``anon`` is mostly Python's own object arenas and the threads' stacks.

    .venv/bin/python benchmarks/memsplit.py one BULUTFON_ACCOUNTS_AT_ONCE=50
    .venv/bin/python benchmarks/memsplit.py few

Prints one JSON line per sample, then the case's figures with the sample at the largest
RSS (``at_peak``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

EVERY_S = float(os.environ.get("MEMSPLIT_EVERY_S", "1"))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def _jemalloc() -> Any:
    """DuckDB's ``mallctl``, or None when its library does not export it."""
    try:
        import _duckdb

        mallctl = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
    except (ImportError, OSError, AttributeError):
        return None
    mallctl.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    return mallctl


def _je_stats(mallctl: Any) -> dict[str, float]:
    epoch = ctypes.c_uint64(1)
    mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.sizeof(epoch))
    out = {}
    for key in ("resident", "allocated"):
        value = ctypes.c_size_t(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if mallctl(f"stats.{key}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0) == 0:
            out[f"je_{key}"] = round(value.value / 2**20, 1)
    return out


def _sample(started: float, mallctl: Any, mallinfo2: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "RssAnon:")):
            row["rss" if line.startswith("VmRSS") else "anon"] = int(line.split()[1]) // 1024
    if mallctl is not None:
        row.update(_je_stats(mallctl))
    if mallinfo2 is not None:
        info = mallinfo2()
        row["malloc_arena"] = round(info.arena / 2**20, 1)
        row["malloc_in_use"] = round(info.uordblks / 2**20, 1)
        row["malloc_mmap"] = round(info.hblkhd / 2**20, 1)
    row["py_blocks"] = sys.getallocatedblocks()
    row["threads"] = threading.active_count()
    return row


def _child(argv: list[str]) -> None:
    """Inside the sync: sample to ``MEMSPLIT_LOG`` from a daemon thread, run the CLI."""
    mallctl = _jemalloc()
    mallinfo2 = None
    with contextlib.suppress(OSError, AttributeError):
        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = _MallInfo2
    log = open(os.environ["MEMSPLIT_LOG"], "w")  # noqa: SIM115 (open for the whole run)
    started = time.monotonic()

    def sample_forever() -> None:
        while True:
            log.write(json.dumps(_sample(started, mallctl, mallinfo2)) + "\n")
            log.flush()
            time.sleep(EVERY_S)

    threading.Thread(target=sample_forever, name="memsplit", daemon=True).start()
    from bulutfon_pipeline.cli.main import run

    sys.argv = ["bulutfon-pipeline", *argv]
    run()


def _report(out: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    for row in samples:
        print(json.dumps(row))
    out["at_peak"] = max(samples, key=lambda r: r["rss"]) if samples else None
    print(json.dumps(out))


if __name__ == "__main__":
    from common import recorded_script

    recorded_script(__file__, _child, _report, "MEMSPLIT_LOG")
