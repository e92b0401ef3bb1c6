"""Benchmark 6 (issue 12): the detail fan-out under every way the API says "slow down".

The simulator runs in its own process; the product's ``AsyncBulutfonClient.fetch_details``
fetches N details under seven behaviours of the API, each measured in the same run as its
reference:

1. clean, latency 20-30 ms: today's flow control against main's (``legacy_concurrency``),
   alternated, median of three runs each;
2. a fixed per-token limit R (100 and 400 req/s), with and without ``Retry-After``;
3. 5 % and 20 % of requests answered 429 at random, with ``Retry-After: 1`` and without,
   against the clean run of (1);
4. a shared limit: R = 60 req/s, and a second client on the same token polls at 50 req/s
   for 20 s in the middle of the load, then stops;
5. a limit that changes mid-run: R = 200, 50 for 20 s, then 200 again;
6. 503 for 5 s (``outage_s``) in an otherwise clean run;
7. a slow API: latency 300 ms +- 200 ms (uniform 100-500 ms).

Every case checks its data: every uuid answered once, no failure, each payload equal to
the clean reference's, and exactly N detail 200s on the server for our client (no call
fetched twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx
from common import DETAIL_PATH, LIST_PATH, Simulator, load_now, simulator
from legacy_concurrency import LegacyAsyncClient

from bulutfon_pipeline.api import AsyncBulutfonClient, BulutfonClient, ClientConfig

CONCURRENCY = 16
#: Every knob a case may set, at its neutral value: each case starts from these.
BASE = {
    "rate_limit_rps": 0.0,
    "rate_limit_retry_after": False,
    "random_429_rate": 0.0,
    "random_429_retry_after_share": 0.0,
    "error_rate": 0.0,
    "latency_ms": 20.0,
    "jitter_ms": 10.0,
    "outage_s": 0.0,
    "outage_requests": 0,
}


def _config(sim: Simulator) -> ClientConfig:
    return ClientConfig(
        api_url=sim.url,
        token_url=sim.url + "/oauth/token",
        cdr_list_path=LIST_PATH,
        cdr_detail_path=DETAIL_PATH,
        access_token=sim.token,
        page_size=500,
        max_concurrency=CONCURRENCY,
    )


def _uuids(sim: Simulator) -> list[str]:
    with BulutfonClient(_config(sim)) as client:
        return [str(item["uuid"]) for page in client.iter_listing_pages() for item in page.items]


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def _other_client(
    sim: Simulator, uuids: Sequence[str], start: float, seconds: float, rps: float, log: list
) -> None:
    """Another integration on the same token: one GET every ``1/rps`` s, whatever the
    answer (it does not back off), from ``start`` for ``seconds``; logs (time, status)."""
    await asyncio.sleep(start)
    began = time.perf_counter()
    tasks = []
    async with httpx.AsyncClient(headers={"User-Agent": "other-integration"}) as http:

        async def one(uuid: str) -> None:
            url = sim.url + DETAIL_PATH.format(uuid=uuid)
            response = await http.get(url, params={"access_token": sim.token})
            log.append((time.perf_counter(), response.status_code))

        i = 0
        while (now := time.perf_counter()) < began + seconds:
            tasks.append(asyncio.create_task(one(uuids[i % len(uuids)])))
            i += 1
            await asyncio.sleep(max(0.0, began + i / rps - now))
        await asyncio.gather(*tasks)


async def _schedule(sim: Simulator, changes: Sequence[tuple[float, dict[str, Any]]]) -> None:
    began = time.perf_counter()
    for at, knobs in changes:
        await asyncio.sleep(max(0.0, began + at - time.perf_counter()))
        await asyncio.to_thread(sim.configure, **knobs)


def fetch(
    sim: Simulator,
    uuids: list[str],
    reference: dict[str, str] | None,
    *,
    legacy: bool = False,
    knobs: dict[str, Any] | None = None,
    changes: Sequence[tuple[float, dict[str, Any]]] = (),
    other: tuple[float, float, float] | None = None,
) -> dict[str, Any]:
    """One fan-out of ``uuids`` under ``knobs`` (plus timed ``changes`` and an ``other``
    client (start, seconds, rps)); the figures and the data checks."""
    sim.configure(**{**BASE, **(knobs or {})})
    sim.reset_stats()
    other_log: list[tuple[float, int]] = []
    digests: dict[str, str] = {}
    answers: dict[str, int] = {}
    times: list[float] = []
    failed = 0
    load = load_now()

    async def main() -> tuple[float, float, dict[str, Any], Any]:
        client_type = LegacyAsyncClient if legacy else AsyncBulutfonClient
        async with client_type(_config(sim)) as client:
            side = [asyncio.create_task(_schedule(sim, changes))]
            if other is not None:
                side.append(asyncio.create_task(_other_client(sim, uuids, *other, other_log)))
            started = time.perf_counter()
            nonlocal failed
            async for result in client.fetch_details(uuids):
                times.append(time.perf_counter() - started)
                answers[result.uuid] = answers.get(result.uuid, 0) + 1
                if result.error is None and result.payload is not None:
                    digests[result.uuid] = _digest(result.payload)
                else:
                    failed += 1
            seconds = time.perf_counter() - started
            for task in side:
                await task
            return started, seconds, client.stats.as_dict(), client.last_limiter

    started, seconds, stats, limiter = asyncio.run(main())
    server = sim.stats()["detail"]
    other_ok = sum(1 for _, status in other_log if status == 200)
    responses = sum(server.values()) - len(other_log)
    ours_429 = stats["rate_limited"]
    exact = (
        sorted(answers) == sorted(uuids)
        and set(answers.values()) == {1}
        and (reference is None or digests == reference)
    )
    out: dict[str, Any] = {
        "details": len(uuids),
        "legacy": legacy,
        "seconds": round(seconds, 2),
        "ok": len(digests),
        "failures": failed,
        "exact": exact,
        # server 200s to our client minus one per uuid: calls fetched twice on success
        "fetched_twice": server.get("200", 0) - other_ok - len(uuids),
        "responses": responses,
        "share_429": round(ours_429 / responses, 4) if responses else 0.0,
        "server_statuses": server,
        "per_second": _bins(times, seconds),
        "limiter": _limiter(limiter),
        "load": load,
    }
    if other is not None:
        out["other"] = {
            "ok_per_second": _bins([t - started for t, s in other_log if s == 200], seconds),
            "requests": len(other_log),
            "start_s": other[0],
            "stop_s": other[0] + other[1],
        }
    out["_digests"] = digests
    return out


def _bins(times: Sequence[float], seconds: float) -> list[int]:
    bins = [0] * (int(seconds) + 1)
    for t in times:
        if 0 <= t < len(bins):
            bins[int(t)] += 1
    return bins


def _limiter(limiter: Any) -> dict[str, Any]:
    fields = ("decreases", "sporadic", "increases", "noise", "estimate", "rate", "limit")
    out = {}
    for name in fields:
        value = getattr(limiter, name, None)
        out[name] = round(value, 3) if isinstance(value, float) else value
    return out


def _strip(run: dict[str, Any]) -> dict[str, Any]:
    run.pop("_digests", None)
    return run


def _ideal_shared(run: dict[str, Any], limit: float) -> float:
    """Seconds the load needs at the rate left free each second (R minus what the other
    client was granted), starting with the bucket's one second of R."""
    need = run["details"] - limit
    other = run["other"]["ok_per_second"]
    t = 0
    while need > 0:
        free = limit - (other[t] if t < len(other) else 0)
        if free >= need:
            return t + need / free
        need -= free
        t += 1
    return float(t)


def _recovery(run: dict[str, Any], limit: float) -> float | None:
    """Seconds from the other client's stop to our first second at >= 0.85 R."""
    stop = run["other"]["stop_s"]
    per_second = run["per_second"]
    for second in range(int(stop), len(per_second) - 1):  # the last bin is partial
        if per_second[second] >= 0.85 * limit:
            return max(0.0, second + 1 - stop)
    return None


def _available(seconds: float, steps: Sequence[tuple[float, float]]) -> float:
    """Requests a changing limit admits in ``seconds``: its integral plus one full bucket
    (one second of R) each time the limit is set, as the simulator refills it."""
    total = 0.0
    for i, (at, rate) in enumerate(steps):
        if at >= seconds:
            break
        end = min(seconds, steps[i + 1][0]) if i + 1 < len(steps) else seconds
        total += rate * (end - at) + rate
    return total


def run(quick: bool) -> dict[str, Any]:
    n = 1000 if quick else 2000
    with simulator(days=5, calls_per_day=1000) as sim:
        uuids = _uuids(sim)
        print(f"  flow: {len(uuids)} calls listed", flush=True)
        out: dict[str, Any] = {"concurrency": CONCURRENCY}

        # 1. clean: ours and main's, alternated; the first (ours) is the data reference.
        first = fetch(sim, uuids[:n], None)
        reference = first["_digests"]
        clean = [_strip(first)]
        for legacy in (True, False, True, False, True):
            clean.append(_strip(fetch(sim, uuids[:n], reference, legacy=legacy)))
        ours = statistics.median(r["seconds"] for r in clean if not r["legacy"])
        theirs = statistics.median(r["seconds"] for r in clean if r["legacy"])
        # What this machine can do at all, unlimited: the ceiling of every figure below.
        capacity = n / ours
        out["clean"] = {"runs": clean, "ours_s": ours, "legacy_s": theirs,
                        "ratio": round(theirs / ours, 3),
                        "capacity_rps": round(capacity, 1)}  # fmt: skip
        print(f"  flow clean: ours {ours:.2f} s, main's {theirs:.2f} s", flush=True)
        # The reference for the larger cases: every payload of every uuid.
        everything = dict(reference)
        rest = [u for u in uuids if u not in everything]
        everything.update(
            fetch(sim, rest, None, knobs={"latency_ms": 0, "jitter_ms": 0})["_digests"]
        )

        def case(count: int, **kw: Any) -> dict[str, Any]:
            chosen = uuids[:count]
            result = _strip(fetch(sim, chosen, {u: everything[u] for u in chosen}, **kw))
            print(f"  flow {kw.get('knobs')}: {result['seconds']:.1f} s, "
                  f"429 {100 * result['share_429']:.1f} %, failed {result['failures']}, "
                  f"exact {result['exact']}", flush=True)  # fmt: skip
            return result

        # 2. a fixed limit, with and without Retry-After
        fixed = []
        for rate in (100.0, 400.0):
            # 20 s at R = 100 (10 s quick), 10 s at R = 400 (6 s quick): the first
            # second's full bucket and the first cut weigh little in the share of 429s.
            count = (
                int(rate * (10 if quick else 20))
                if rate == 100.0
                else int(rate * (6 if quick else 10))
            )
            for retry_after in (False, True):
                r = case(
                    count, knobs={"rate_limit_rps": rate, "rate_limit_retry_after": retry_after}
                )
                r.update(limit_rps=rate, retry_after=retry_after, capacity_rps=round(capacity, 1),
                         ratio=round(count / r["seconds"] / rate, 3),
                         best_possible_ratio=round(count / (count - rate), 3))  # fmt: skip
                fixed.append(r)
        out["fixed"] = fixed

        # 3. random 429s, against the clean run of the same uuids
        random_runs = []
        for share in (0.05, 0.20):
            for retry_after in (True, False):
                knobs = {"random_429_rate": share,
                         "random_429_retry_after_share": 1.0 if retry_after else 0.0}  # fmt: skip
                r = case(n, knobs=knobs)
                r.update(share=share, retry_after=retry_after,
                         ratio=round(r["seconds"] / ours, 3))  # fmt: skip
                random_runs.append(r)
        out["random"] = random_runs

        # 4. a shared limit: R = 60, another client at 50 req/s for 20 s from t = 5 s
        limit = 60.0
        r = case(1500, knobs={"rate_limit_rps": limit}, other=(5.0, 20.0, 50.0))
        ideal = _ideal_shared(r, limit)
        r.update(limit_rps=limit, ideal_s=round(ideal, 2), ratio=round(r["seconds"] / ideal, 3),
                 recovery_s=_recovery(r, limit))  # fmt: skip
        out["shared"] = r

        # 5. a limit that drops from 200 to 50 for 20 s, then comes back
        steps = [(0.0, 200.0), (8.0, 50.0), (28.0, 200.0)]
        count = 200 * 8 + 50 * 20 + 200 * 8
        changes = [(at, {"rate_limit_rps": rate}) for at, rate in steps[1:]]
        r = case(count, knobs={"rate_limit_rps": 200.0}, changes=changes)
        available = _available(r["seconds"], steps)
        # The same with the rate capped by what this machine reached unlimited (clean run).
        reachable = _available(r["seconds"], [(at, min(rate, capacity)) for at, rate in steps])
        r.update(steps=steps, available=round(available), ratio=round(count / available, 3),
                 capacity_rps=round(capacity, 1), reachable=round(reachable),
                 reachable_ratio=round(count / reachable, 3))  # fmt: skip
        out["changing"] = r

        # 6. 503 for 5 s, 1.5 s into an otherwise clean run
        r = case(n, changes=[(1.5, {"outage_s": 5.0})])
        r.update(outage_s=5.0, ideal_s=round(ours + 5.0, 2),
                 excess_s=round(r["seconds"] - (ours + 5.0), 2))  # fmt: skip
        out["outage"] = r

        # 7. a slow API: 300 ms +- 200 ms
        count = 400 if quick else 800
        r = case(count, knobs={"latency_ms": 100.0, "jitter_ms": 400.0})
        ceiling = CONCURRENCY / 0.3
        r.update(ceiling_rps=round(ceiling, 1), achieved_rps=round(count / r["seconds"], 1),
                 ratio=round(count / r["seconds"] / ceiling, 3))  # fmt: skip
        out["slow"] = r
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2, default=str))
