"""When each account of a multi-account sync does what, and how busy the CPU is meanwhile:
one case of ``accounts.py`` whose ``sync`` records, from inside:

* each account's Dagster runs (``runner.sync.materialize``): start and end, by selection;
* its detail fetch (``detail_spool.in_turns``): first and last detail;
* every turn to write DuckDB (``account_threads.write_turns``): how long it waited and
  how long it held it, by what took it (the listing's scan, the directory's merge, the
  detail loads, the recordings);
* the process's CPU seconds every 0.5 s (``os.times``).

    .venv/bin/python benchmarks/timeline.py one
    .venv/bin/python benchmarks/timeline.py few BULUTFON_ACCOUNTS_AT_ONCE=10

Prints the cores used in each 2 s window, when the accounts' listing runs and detail
runs ended (first, median, last), the turns' holds and waits by kind, and the path of the
account that finished last; then the case's figures as one JSON line. The recording costs
little (a list append per event), but it is not the benchmark: the case's own figures come
from ``accounts.py``.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: What took a turn: the first of these functions found up the taker's stack.
_TAKERS = ("scan_listing", "load_directory", "in_turns", "save_recordings")


def _child(argv: list[str]) -> None:
    """Inside the sync: record to ``TIMELINE_LOG`` at exit, run the CLI."""
    import atexit

    from bulutfon_pipeline import account_threads, detail_spool
    from bulutfon_pipeline.runner import sync

    started = time.monotonic()
    events: list[tuple[Any, ...]] = []

    def record(*what: Any) -> None:
        events.append(
            (round(time.monotonic() - started, 3), threading.current_thread().name, *what)
        )

    def save() -> None:
        Path(os.environ["TIMELINE_LOG"]).write_text("\n".join(json.dumps(e) for e in events))

    atexit.register(save)

    def cpu_forever() -> None:
        while True:
            times = os.times()
            record("cpu", round(times.user + times.system, 2))
            time.sleep(0.5)

    threading.Thread(target=cpu_forever, name="timeline", daemon=True).start()
    materialize = sync.materialize

    def timed_run(selection: Any, **kwargs: Any) -> Any:
        record("run_start", selection[0])
        try:
            return materialize(selection, **kwargs)
        finally:
            record("run_end", selection[0])

    sync.materialize = timed_run
    in_turns = detail_spool.in_turns

    def timed_in_turns(results: Any, *args: Any, **kwargs: Any) -> Any:
        def watched() -> Any:
            count = 0
            for result in results:
                if not count:
                    record("fetch_first")
                count += 1
                yield result
            record("fetch_end", count)

        yield from in_turns(watched(), *args, **kwargs)

    detail_spool.in_turns = timed_in_turns
    held_since = threading.local()

    class Timed:
        def __init__(self, turns: threading.Semaphore) -> None:
            self.turns = turns

        def acquire(self, blocking: bool = True) -> bool:
            asked = time.monotonic()
            got = self.turns.acquire(blocking)
            if got:
                held_since.t = time.monotonic()
                frame, taker = sys._getframe(1), "other"
                while frame is not None and taker == "other":
                    taker = frame.f_code.co_name if frame.f_code.co_name in _TAKERS else taker
                    frame = frame.f_back
                held_since.taker = taker
                record("turn_wait", taker, round(held_since.t - asked, 4))
            return got

        def release(self) -> None:
            record("turn_hold", held_since.taker, round(time.monotonic() - held_since.t, 4))
            self.turns.release()

        def __enter__(self) -> Timed:
            self.acquire()
            return self

        def __exit__(self, *exc: object) -> None:
            self.release()

    write_turns, timed = account_threads.write_turns, {}

    def timed_write_turns(server: bool) -> Any:
        turns = write_turns(server)
        return None if turns is None else timed.setdefault(id(turns), Timed(turns))

    account_threads.write_turns = timed_write_turns
    from bulutfon_pipeline.cli.main import run

    sys.argv = ["bulutfon-pipeline", *argv]
    run()


def _summary(events: list[list[Any]]) -> None:
    cpu = [(e[0], e[3]) for e in events if e[2] == "cpu"]
    windows = [
        f"{t1:.0f}s:{(c1 - c0) / (t1 - t0):.2f}"
        for (t0, c0), (t1, c1) in zip(cpu[::4], cpu[4::4], strict=False)
    ]
    print("cores used, each 2 s window ending at:", " ".join(windows))
    by_thread: dict[str, list[list[Any]]] = collections.defaultdict(list)
    for event in events:
        by_thread[event[1]].append(event)
    ends: dict[str, list[float]] = collections.defaultdict(list)
    for thread_events in by_thread.values():
        for event in thread_events:
            if event[2] == "run_end":
                ends[event[3]].append(event[0])
    for selection, times in sorted(ends.items()):
        times.sort()
        median = statistics.median(times)
        print(
            f"{selection} runs ended: first {times[0]:.1f} s, median {median:.1f} s, "
            f"last {times[-1]:.1f} s ({len(times)} runs)"
        )
    holds: dict[str, list[float]] = collections.defaultdict(list)
    waits: dict[str, list[float]] = collections.defaultdict(list)
    for event in events:
        if event[2] in ("turn_hold", "turn_wait"):
            (holds if event[2] == "turn_hold" else waits)[event[3]].append(event[4])
    for taker in sorted(holds):
        print(
            f"turns taken by {taker}: {len(holds[taker])}, held {sum(holds[taker]):.2f} s "
            f"in all, waited {sum(waits[taker]):.2f} s in all"
        )
    accounts = {name: evs for name, evs in by_thread.items() if any(e[2] == "run_end" for e in evs)}
    if accounts:
        last = max(accounts, key=lambda name: accounts[name][-1][0])
        path = [f"{e[0]:.2f} {' '.join(str(x) for x in e[2:])}" for e in accounts[last]]
        print(f"the account that finished last ({last}):\n  " + "\n  ".join(path))


def _report(out: dict[str, Any], events: list[Any]) -> None:
    _summary(events)
    print(json.dumps(out))


if __name__ == "__main__":
    from common import recorded_script

    recorded_script(__file__, _child, _report, "TIMELINE_LOG")
