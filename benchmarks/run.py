"""``make bench``: every benchmark of issue 4 in one run, results into BENCHMARKS.md.

    .venv/bin/python benchmarks/run.py [--quick]
        [--only fanout,flow,load,sync,analysts,pgload,webhook,accounts]

Each figure is a ratio against a peer measured in the same run (the machine is shared,
so absolute timings are noisy); the load average is recorded next to each measurement.
Raw results go to ``benchmarks/results/{quick,full}.json``; BENCHMARKS.md is rebuilt
from whichever of the two exist.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accounts
import analytics
import fanout
import flow
import pgload
import report
import syncbench
import webhook
from common import PYTHON, ROOT, WORK, load_now, machine, run_child_rss
from datasets import details_file

from bulutfon_pipeline.settings import DEFAULT_DETAIL_BATCH_SIZE

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("ours", "duckdb", "duckdb-batched", "dlt", "naive")


def load_benchmark(calls: int, *, naive_max_s: float, timeout_s: float) -> dict[str, Any]:
    """All the contenders on the same NDJSON file, each in its own process."""
    path = details_file(calls)
    out: dict[str, Any] = {"calls": calls, "bytes": path.stat().st_size,
                           "batch": DEFAULT_DETAIL_BATCH_SIZE}  # fmt: skip
    for kind in KINDS:
        folder = WORK / f"load_{kind}_{calls}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        load = load_now()
        cmd = [PYTHON, "benchmarks/loaders.py", kind, str(path), str(folder / "db.duckdb"),
               "--max-seconds", str(naive_max_s)]  # fmt: skip
        run = run_child_rss(cmd, timeout=timeout_s)
        if run.returncode != 0:
            out[kind] = {"error": f"exit {run.returncode}", "seconds": round(run.seconds, 1),
                         "stderr": run.stderr[-600:], "load": load}  # fmt: skip
            print(f"  load {kind} {calls}: FAILED exit {run.returncode}", flush=True)
            continue
        result = json.loads(run.stdout.strip().splitlines()[-1])
        result["rows_per_s"] = round(result["rows"] / result["seconds"], 1)
        result["process_peak_rss_mb"] = round(run.peak_rss_mb, 1)
        result["cpu_seconds"] = round(run.cpu_seconds, 2)
        result["load"] = load
        out[kind] = result
        print(f"  load {kind} {calls}: {result['rows_per_s']:.0f} rows/s, "
              f"{run.peak_rss_mb:.0f} MB", flush=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
    return out


def write_report() -> None:
    """BENCHMARKS.md from every results file there is."""
    runs = {m: json.loads((RESULTS / f"{m}.json").read_text())
            for m in ("quick", "full") if (RESULTS / f"{m}.json").exists()}  # fmt: skip
    (ROOT / "BENCHMARKS.md").write_text(report.render(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 5 minutes")
    parser.add_argument(
        "--only",
        default="fanout,flow,load,sync,analysts,pgload,webhook,accounts",
        help="sections to run",
    )
    parser.add_argument("--render", action="store_true", help="only rebuild BENCHMARKS.md")
    args = parser.parse_args()
    if args.render:
        write_report()
        return
    quick, only = args.quick, set(args.only.split(","))
    mode = "quick" if quick else "full"
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"{mode}.json"
    results: dict[str, Any] = json.loads(target.read_text()) if target.exists() else {}
    results.update(mode=mode, machine=machine(), started=time.strftime("%Y-%m-%d %H:%M:%S"))
    results["command"] = " ".join(["benchmarks/run.py", *sys.argv[1:]])
    started = time.perf_counter()

    if "fanout" in only:
        print("1. fan-out against the rate limit", flush=True)
        results["fanout"] = fanout.run(quick)
    if "flow" in only:
        print("6. flow control under every way the API says slow down", flush=True)
        results["flow"] = flow.run(quick)
    if "load" in only:
        print("2. normalize + load throughput", flush=True)
        sizes = (2_000, 5_000) if quick else (20_000, 100_000)
        results["load"] = [
            load_benchmark(n, naive_max_s=12 if quick else 120, timeout_s=600 if quick else 1800)
            for n in sizes
        ]
    if "sync" in only:
        print("3-5. sync memory, no-op sync, start-up", flush=True)
        sizes = (1_000, 5_000) if quick else (20_000, 100_000)
        results["memory"] = [syncbench.full_sync(n) for n in sizes]
        results["noop"] = syncbench.noop_and_startup(sizes[0])
    if "analysts" in only:
        print("7. analysts never block a load (issue 13)", flush=True)
        results["analysts"] = analytics.run(quick)
    if "pgload" in only:
        print("8. bulk load into PostgreSQL (issue 13)", flush=True)
        results["pgload"] = pgload.run(quick)
    if "webhook" in only:
        print("9. webhooks: hangup to cdrs, receiver under load (issue 15)", flush=True)
        results["webhook"] = webhook.run(quick)
    if "accounts" in only:
        print("10. many accounts in one deployment (issue 14)", flush=True)
        results["accounts"] = accounts.run(quick)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["loadavg_end"] = load_now()
    target.write_text(json.dumps(results, indent=2, default=str))
    write_report()
    print(report.summary(results))
    print(f"wrote BENCHMARKS.md and {target.relative_to(ROOT)} in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
