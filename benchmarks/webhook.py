"""Issue 15, section 2: webhooks. Two measurements, each against its target:

* **Latency** (``latency``): the simulator (in this process) makes a new call every 1-5 s
  and posts its ``call_hangup`` to the receiver (``bulutfon-pipeline webhook``, its own
  process). The sensor is evaluated on its default interval (``SENSOR_INTERVAL_S``) by a
  loop that does what Dagster's daemon does: each tick calls the sensor function on a real
  instance (``DAGSTER_HOME`` on SQLite); each run it requests is launched as a process of
  its own (``dagster job execute``, so every run pays its interpreter start-up and imports,
  as with the daemon's default run launcher); while a run is in flight, the ticks skip
  (what the sensor does itself when its run is queued or running). A call's latency is
  ``cdrs.loaded_at`` (written in the load's transaction) minus the moment its post was
  answered 200. Target: 95 % of calls ≤ 60 s.
* **Load** (``load``): 200 posts/s for 60 s (quick: 20 s) of distinct hangups, paced,
  up to 64 in flight, to the receiver in its own process. Targets: every post answered
  200 and in the inbox exactly once; memory flat: the receiver's RSS at the end within
  10 % of its RSS after the first 5 s (sampled every second from ``/proc``; ``VmHWM`` is
  the peak). The achieved rate is given against the 200/s asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import httpx
from common import PYTHON, ROOT, WORK, load_now, process_cpu_seconds

sys.path.insert(0, str(ROOT))
import dagster as dg

from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer
from bulutfon_pipeline.simulator.webhooks import call_hangup_event
from bulutfon_pipeline.webhook.sensor import SENSOR_INTERVAL_S, bulutfon_webhook_sensor

USER = "bench"
#: A throw-away password for the receiver under test (never printed).
PASSWORD = os.urandom(12).hex()
TARGET_S = 60.0
RATE = 200


@contextlib.contextmanager
def _receiver(data_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = {**os.environ, "BULUTFON_DATA_DIR": str(data_dir), "BULUTFON_WEBHOOK_USER": USER,
           "BULUTFON_WEBHOOK_PASSWORD": PASSWORD}  # fmt: skip
    process = subprocess.Popen(
        [PYTHON, "-m", "bulutfon_pipeline.cli", "webhook", "--port", "0"],
        env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        if "receiving webhooks on " not in line:
            raise RuntimeError(f"the receiver did not start: {line!r}")
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield line.split("receiving webhooks on ", 1)[1].split(";", 1)[0], process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def latency(quick: bool) -> dict[str, Any]:
    """Hangup post -> row in ``cdrs``, with the sensor on its default interval."""
    folder = WORK / "webhook_latency"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "dagster_home").mkdir(parents=True)
    (folder / "dagster_home" / "dagster.yaml").write_text("")  # SQLite storage, defaults
    duration = 90.0 if quick else 300.0
    rng = random.Random(15)
    config = SimulatorConfig(days=1, calls_per_day=5, dialect="v1", seed=15,
                             latency_ms=30, jitter_ms=10)  # fmt: skip
    with SimulatorServer(config) as sim, _receiver(folder) as (url, _):
        env = {**os.environ, **sim.env(), "BULUTFON_DATA_DIR": str(folder),
               "BULUTFON_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
               "BULUTFON_START_DATE": "2015-01-01", "DAGSTER_HOME": str(folder / "dagster_home"),
               "BULUTFON_WEBHOOK_USER": USER, "BULUTFON_WEBHOOK_PASSWORD": PASSWORD}  # fmt: skip
        posted: dict[str, float] = {}
        done = threading.Event()

        def post_calls() -> None:
            with httpx.Client(auth=(USER, PASSWORD), timeout=30) as client:
                end = time.time() + duration
                while time.time() < end:
                    (uuid,) = sim.add_calls(1)
                    call = sim.dataset.get(uuid)
                    assert call is not None
                    client.post(url, json=call_hangup_event(call)).raise_for_status()
                    posted[uuid] = time.time()
                    time.sleep(rng.uniform(1.0, 5.0))
            done.set()

        old_env = dict(os.environ)
        os.environ.update(env)  # the sensor reads the inbox's place from the environment
        instance = dg.DagsterInstance.get()
        runs: list[dict[str, Any]] = []
        ticks = 0
        poster = threading.Thread(target=post_calls, daemon=True)
        poster.start()
        cursor: str | None = None
        deadline = time.time() + duration + 180
        try:
            while time.time() < deadline:
                tick_at = time.time()
                ticks += 1
                context = dg.build_sensor_context(instance=instance, cursor=cursor)
                result = bulutfon_webhook_sensor(context)
                cursor = context.cursor
                for request in result if isinstance(result, list) else []:
                    runs.append(_launch(request, folder, env))
                if done.is_set() and _loaded(folder) >= set(posted):
                    break
                time.sleep(max(0.0, tick_at + SENSOR_INTERVAL_S - time.time()))
        finally:
            os.environ.clear()
            os.environ.update(old_env)
            instance.dispose()
        loaded_at = _loaded_at(folder)
    latencies = [loaded_at[u] - t for u, t in posted.items() if u in loaded_at]
    p95 = _percentile(latencies, 0.95)
    out = {
        "quick": quick, "sensor_interval_s": SENSOR_INTERVAL_S, "seconds_posting": duration,
        "calls_posted": len(posted), "calls_loaded": len(latencies), "ticks": ticks,
        "runs": len(runs), "runs_failed": sum(1 for r in runs if r["returncode"] != 0),
        "run_seconds_median": round(statistics.median([r["seconds"] for r in runs]), 2)
        if runs else None,
        "latency_p50_s": round(_percentile(latencies, 0.5) or 0, 2),
        "latency_p95_s": round(p95 or 0, 2),
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "share_within_target": round(sum(1 for x in latencies if x <= TARGET_S)
                                     / max(1, len(posted)), 4),
        "load": load_now(),
    }  # fmt: skip
    print(f"  webhook latency: {out['calls_loaded']}/{out['calls_posted']} calls, p50 "
          f"{out['latency_p50_s']} s, p95 {out['latency_p95_s']} s, {out['runs']} runs "
          f"(median {out['run_seconds_median']} s)", flush=True)  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _launch(request: dg.RunRequest, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """The requested run in a process of its own, as the daemon's run launcher starts it;
    returns when it is done (the sensor skips while its run is in flight anyway)."""
    config = folder / "run_config.json"
    config.write_text(json.dumps(request.run_config))
    started = time.perf_counter()
    run = subprocess.run(
        [PYTHON, "-m", "dagster", "job", "execute", "-m", "bulutfon_pipeline.definitions",
         "-j", "bulutfon_webhook_load", "-c", str(config), "--tags", json.dumps(request.tags)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        print(f"  webhook run failed: {run.stderr[-400:]}", flush=True)
    return {"seconds": round(seconds, 2), "returncode": run.returncode}


def _loaded(folder: Path) -> set[str]:
    return set(_loaded_at(folder))


def _loaded_at(folder: Path) -> dict[str, float]:
    path = folder / "warehouse.duckdb"
    if not path.exists():
        return {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return {}  # a run holds the file: look again at the next tick
    try:
        rows = con.execute("SELECT uuid, epoch(loaded_at) FROM cdrs").fetchall()
    except duckdb.Error:
        rows = []
    finally:
        con.close()
    return {str(uuid): float(at) for uuid, at in rows}


def load(quick: bool) -> dict[str, Any]:
    """200 posts/s of distinct hangups: none lost, the receiver's memory flat."""
    folder = WORK / "webhook_load"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    seconds = 20 if quick else 60
    total = RATE * seconds
    template = call_hangup_event(
        SimulatorServer(SimulatorConfig(days=1, calls_per_day=3, dialect="v1")).dataset.calls[0]
    )
    bodies = []
    for index in range(total):
        event = dict(template, uuid=f"bench-{index:06d}")
        event["cdr"] = dict(template["cdr"], uuid=event["uuid"])
        bodies.append(json.dumps(event).encode())
    with _receiver(folder) as (url, process):
        rss: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.perf_counter()
            while not stop.is_set():
                rss.append((time.perf_counter() - start, _status_kb(process.pid, "VmRSS") / 1024))
                stop.wait(1.0)

        cpu_before = process_cpu_seconds(process.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        statuses, post_latencies = asyncio.run(_blast(url, bodies))
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        cpu = process_cpu_seconds(process.pid) - cpu_before
        peak = _status_kb(process.pid, "VmHWM") / 1024
    with contextlib.closing(sqlite3.connect(folder / "webhook_inbox.sqlite3")) as con:
        stored, distinct = con.execute(
            "SELECT count(*), count(DISTINCT uuid) FROM events WHERE event_type = 'call_hangup'"
        ).fetchone()
    at_5s = next((mb for t, mb in rss if t >= 5.0), rss[0][1])
    end = rss[-1][1]
    out = {
        "quick": quick, "rate_asked": RATE, "seconds_asked": seconds, "posts": total,
        "seconds": round(elapsed, 2), "rate_achieved": round(total / elapsed, 1),
        "answered_200": statuses.get(200, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "stored": stored, "stored_distinct": distinct,
        "post_latency_p50_ms": round(1000 * (_percentile(post_latencies, 0.5) or 0), 1),
        "post_latency_p99_ms": round(1000 * (_percentile(post_latencies, 0.99) or 0), 1),
        "rss_at_5s_mb": round(at_5s, 1), "rss_end_mb": round(end, 1),
        "rss_growth": round(end / at_5s - 1, 4), "peak_rss_mb": round(peak, 1),
        "receiver_cpu_s": round(cpu, 2), "rss_series_mb": [round(mb, 1) for _, mb in rss],
        "load": load_now(),
    }  # fmt: skip
    print(f"  webhook load: {out['answered_200']}/{total} answered 200, {stored} stored, "
          f"{out['rate_achieved']} posts/s, RSS {out['rss_at_5s_mb']} -> {out['rss_end_mb']} MB "
          f"(peak {out['peak_rss_mb']})", flush=True)  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    return out


async def _blast(url: str, bodies: list[bytes]) -> tuple[dict[int, int], list[float]]:
    """Post ``bodies`` at ``RATE`` per second, at most 64 in flight. aiohttp's client (C
    HTTP parser) rather than httpx's: on a loaded 2-core machine the sender must not be
    what limits the rate."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    auth = aiohttp.BasicAuth(USER, PASSWORD)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, auth=auth) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        for item in enumerate(bodies):
            queue.put_nowait(item)

        async def worker() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                index, body = item
                await asyncio.sleep(max(0.0, start + index / RATE - loop.time()))
                began = time.perf_counter()
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as response:
                        await response.read()
                        code = response.status
                except aiohttp.ClientError:
                    code = 0
                latencies.append(time.perf_counter() - began)
                statuses[code] = statuses.get(code, 0) + 1

        for _ in range(64):
            queue.put_nowait(None)
        await asyncio.gather(*(worker() for _ in range(64)))
    return statuses, latencies


def _status_kb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


def run(quick: bool) -> dict[str, Any]:
    return {"load": load(quick), "latency": latency(quick)}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
