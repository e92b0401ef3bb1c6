"""Benchmark 1: the detail fan-out against a per-token rate limit.

The simulator runs in its own process (in-process it would share our GIL) with a
latency of 30 ms +- 10 ms and no ``Retry-After``. The product's own
``BulutfonClient.fetch_details`` fetches N details under a limit R; we report the
achieved rate / R, the share of 429 answers and the failures. The same work with no limit
gives the client's concurrency ceiling, and a plain load generator with many connections
and no latency gives the server's own ceiling (so the stand-in server is never the
bottleneck of a client figure).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from common import DETAIL_PATH, LIST_PATH, Simulator, load_now, process_cpu_seconds, simulator

from bulutfon_pipeline.api import BulutfonClient, ClientConfig


def _client(sim: Simulator) -> BulutfonClient:
    config = ClientConfig(
        api_url=sim.url,
        token_url=sim.url + "/oauth/token",
        cdr_list_path=LIST_PATH,
        cdr_detail_path=DETAIL_PATH,
        access_token=sim.token,
        page_size=500,
    )
    return BulutfonClient(config)


def _uuids(sim: Simulator) -> list[str]:
    with _client(sim) as client:
        return [str(item["uuid"]) for page in client.iter_listing_pages() for item in page.items]


def fetch_run(sim: Simulator, uuids: list[str], rate: float) -> dict[str, Any]:
    """Fetch ``uuids`` through ``fetch_details`` with the server limited to ``rate``."""
    sim.configure(rate_limit_rps=rate, latency_ms=20, jitter_ms=20, rate_limit_retry_after=False)
    sim.reset_stats()
    load = load_now()
    ok = failed = 0
    server_cpu0 = process_cpu_seconds(sim.process.pid)
    with _client(sim) as client:
        cpu0 = time.process_time()
        started = time.perf_counter()
        for result in client.fetch_details(uuids):
            if result.error is None:
                ok += 1
            else:
                failed += 1
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu0
        server_cpu = process_cpu_seconds(sim.process.pid) - server_cpu0
        client_stats = {
            "requests": client.stats.requests,
            "rate_limited": client.stats.rate_limited,
        }
    detail = sim.stats()["detail"]
    responses = sum(detail.values())
    r429 = detail.get("429", 0)
    achieved = ok / seconds
    # The server's token bucket starts full (one second of R), so N requests can finish
    # in (N - R) / R seconds at best: the best possible ratio is N / (N - R).
    best = len(uuids) / max(len(uuids) - rate, 1) if rate else None
    return {
        "limit_rps": rate,
        "details": len(uuids),
        "ok": ok,
        "failures": failed,
        "seconds": round(seconds, 2),
        "achieved_rps": round(achieved, 1),
        "ratio": round(achieved / rate, 3) if rate else None,
        "best_possible_ratio": round(best, 3) if best else None,
        "responses": responses,
        "share_429": round(r429 / responses, 4) if responses else 0.0,
        "client_requests": client_stats["requests"],
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(responses, 1), 3),
        # CPU-seconds per second the client process got: ~1 means it had a whole core.
        "client_cpu_share": round(client_cpu / seconds, 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(responses, 1), 3),
        "load": load,
    }


async def _raw_worker(host: str, port: int, paths: list[str], counter: list[int]) -> None:
    """One keep-alive HTTP/1.1 connection sending ``paths`` one after another.

    Hand-rolled on asyncio streams so that the load generator costs far less CPU per
    request than the server it measures (an httpx client would be the bottleneck).
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for path in paths:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"status {status}")
            counter[0] += 1
    finally:
        writer.close()


def server_ceiling(sim: Simulator, uuids: list[str], connections: int = 16) -> dict[str, Any]:
    """Detail requests/s the simulator serves with no latency and no limit, and the CPU
    it spends per request (robust on a shared machine)."""
    sim.configure(rate_limit_rps=0, latency_ms=0, jitter_ms=0)
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    paths = [f"{DETAIL_PATH.format(uuid=u)}?access_token={sim.token}" for u in uuids]
    shards = [paths[i::connections] for i in range(connections)]
    counter = [0]
    load = load_now()
    cpu0 = process_cpu_seconds(sim.process.pid)
    started = time.perf_counter()

    async def main() -> None:
        await asyncio.gather(*(_raw_worker(host, int(port), s, counter) for s in shards))

    asyncio.run(main())
    seconds = time.perf_counter() - started
    cpu = process_cpu_seconds(sim.process.pid) - cpu0
    return {
        "requests": counter[0],
        "seconds": round(seconds, 2),
        "rps": round(counter[0] / seconds, 1),
        "server_cpu_ms_per_request": round(1000 * cpu / max(counter[0], 1), 3),
        "cpu_bound_rps": round(counter[0] / cpu, 1) if cpu else None,
        "connections": connections,
        "load": load,
    }


def run(quick: bool) -> dict[str, Any]:
    n = 1500 if quick else 6000
    days, per_day = (2, 1000) if quick else (6, 1000)
    with simulator(days=days, calls_per_day=per_day) as sim:
        uuids = _uuids(sim)[:n]
        out: dict[str, Any] = {"server_ceiling": server_ceiling(sim, uuids)}
        # R=100 takes a minute for 6,000; --quick fetches 1,000 there.
        out["runs"] = [
            fetch_run(sim, uuids[: (1000 if quick else n)], 100),
            fetch_run(sim, uuids, 400),
            fetch_run(sim, uuids, 0),
        ]
        limited = out["runs"][2]
        # 16 in flight at ~30 ms each: what the default concurrency can reach at all.
        out["no_limit_rps"] = limited["achieved_rps"]
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
