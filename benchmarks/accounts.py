"""Benchmark 10 (issue 14): many PBX accounts in one deployment.

The simulator serves N accounts in its own process, each with its own token, dataset and
rate limit (``--accounts N --rate-limit-rps 20 --latency-ms 20``); ``bulutfon-pipeline
sync`` loads them from a ``BULUTFON_ACCOUNTS_FILE`` in a child process. Measured in one
run:

* ``cpu``: what one process's CPU allows for this work: the same 50 accounts x 400 calls
  with no rate limit (same latency, same accounts at once), calls per second; it,
  ``one``, ``few`` and ``few-cpu`` run alternately ``PAIRED_RUNS`` times (2), each
  keeping its fastest run and the highest of its peaks, since their ratios are the
  targets and this machine's speed and memory drift;
* ``peer``: one account holding the same number of calls, with no rate limit: what the CPU
  allows without the per-account work (each account's runs, client and listing);
* ``one``: 50 accounts x 400 calls, each limited to 20 req/s, in one process: calls per
  second against min(the sum of the accounts' limits, ``cpu``), and its peak RSS;
* ``few``: 10 accounts x 400 calls, the same way: one worker's memory must stay flat as
  the number of accounts grows (``one`` / ``few`` peak RSS);
* ``few-cpu``: ``cpu``'s 20,000 calls in 10 accounts of 2,000, without limits: more
  accounts at the same data (``cpu`` / ``few-cpu`` peak RSS), since ``few`` also loads a
  fifth of the calls;
* ``pg-one`` and ``pg-two``: the 50 accounts into PostgreSQL by one process, then by two
  processes at once (``sync --account`` with half the accounts each): the aggregate
  throughput of two workers against one;
* ``pg-cpu-one`` and ``pg-cpu-two``: the same without the accounts' limits, so that the
  CPU is the limit of the one process;
* ``pg-quota-one`` and ``pg-quota-two``: those two again, each worker process held to
  ``QUOTA_CORES`` CPUs by a cgroup (``cpu_quota.py``), as if each worker had a machine of
  its own: on this small machine the two workers above share its cores with the simulator
  and the server, so the machine, not each worker's CPU, limits them.

Every run starts from an empty warehouse, and its tables are checked: each account holds
exactly its own calls. The accounts file declares each limited account's ``max_rps``, as
the issue's example does (``BENCH_ACCOUNTS_DECLARE_RPS=0``: undeclared). One case alone,
with variables for the child ``sync``: ``python benchmarks/accounts.py one
BULUTFON_ACCOUNTS_AT_ONCE=24``; the two quota cases alone: ``python benchmarks/accounts.py
quota``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from common import (
    BIN,
    ROOT,
    WORK,
    ChildRun,
    load_now,
    reaped,
    reaped_figures,
    run_child_rss,
    simulator,
    tree_cpu_seconds,
)
from cpu_quota import QuotaGroup, quota_groups

sys.path.insert(0, str(ROOT))
from bulutfon_pipeline_tests.postgres import PostgresServer

END_DATE = dt.date(2015, 4, 16)  # the simulator's default end date
CLI = str(BIN / "bulutfon-pipeline")
LIMIT_RPS = 20.0
LATENCY_MS = 20
#: Whether the accounts file declares each limited account's ``max_rps`` (its client then
#: never learns the limit from 429s). ``BENCH_ACCOUNTS_DECLARE_RPS=0``: undeclared, as the
#: first runs measured.
DECLARE_LIMIT = os.environ.get("BENCH_ACCOUNTS_DECLARE_RPS", "1") != "0"
#: The CPUs each worker process may use in the quota cases: two such workers and the
#: simulator and the server (together about 0.7 of a core in the unlimited cases) fit in
#: this machine's two cores, so each worker's own CPU is what limits it.
QUOTA_CORES = float(os.environ.get("BENCH_ACCOUNTS_QUOTA_CORES", "0.5"))


def _accounts_file(folder: Path, names: Sequence[str], max_rps: float | None) -> Path:
    """One table per account; ``max_rps``: each account's declared cap (the issue's
    example file declares it), so its client paces at the limit from its first request."""
    cap = "" if max_rps is None else f"max_rps = {max_rps:g}\n"
    path = folder / "accounts.toml"
    path.write_text(
        "".join(
            f'[accounts.{name}]\naccess_token_env = "BENCH_TOKEN_{i}"\n{cap}\n'
            for i, name in enumerate(names)
        )
    )
    return path


def _env(
    sim_url: str,
    tokens: Mapping[str, str],
    folder: Path,
    *,
    days: int,
    warehouse_url: str | None = None,
    max_rps: float | None = None,
) -> dict[str, str]:
    """The child's environment: the accounts file, one token variable per account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BULUTFON_", "DAGSTER_"))}
    names = list(tokens)
    env.update(
        BULUTFON_API_URL=sim_url,
        BULUTFON_TOKEN_URL=sim_url + "/oauth/token",
        BULUTFON_CDR_LIST_PATH="/cdr.json",
        BULUTFON_CDR_DETAIL_PATH="/cdr/{uuid}.json",
        BULUTFON_ACCOUNTS_FILE=str(_accounts_file(folder, names, max_rps)),
        BULUTFON_DUCKDB_PATH=str(folder / "warehouse.duckdb"),
        BULUTFON_DATA_DIR=str(folder),
        BULUTFON_START_DATE=(END_DATE - dt.timedelta(days=days - 1)).isoformat(),
        COLUMNS="120",
    )
    for i, name in enumerate(names):
        env[f"BENCH_TOKEN_{i}"] = tokens[name]
    if warehouse_url is not None:
        env["BULUTFON_WAREHOUSE_URL"] = warehouse_url
    return env


def _counts_duckdb(folder: Path) -> dict[str, int]:
    con = duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT account, count(*) FROM cdrs GROUP BY account").fetchall()
    finally:
        con.close()
    return {str(a): int(n) for a, n in rows}


def _counts_pg(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as con:
        rows = con.execute("SELECT account, count(*) FROM cdrs GROUP BY account").fetchall()
    return {str(a): int(n) for a, n in rows}


def _run_children(
    cmds: Sequence[Sequence[str]],
    env: Mapping[str, str],
    groups: Sequence[QuotaGroup] | None = None,
) -> list[ChildRun]:
    """Start every command at once, the i-th in ``groups[i]`` (its CPU quota) when given;
    wait for all (each one's own peak RSS and CPU)."""
    if len(cmds) == 1 and groups is None:
        return [run_child_rss(cmds[0], env=env)]
    started = time.perf_counter()
    joins: list[Any] = [g.join for g in groups] if groups is not None else [None] * len(cmds)
    results = [WORK / f"accounts_child_{i}.figures.json" for i in range(len(cmds))]
    procs = [
        subprocess.Popen(
            reaped(cmd, result),
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=join,  # the reaper joins the group, and the command with it
        )
        for cmd, join, result in zip(cmds, joins, results, strict=True)
    ]
    runs = []
    for proc, result in zip(procs, results, strict=True):
        out, err = proc.communicate()
        seconds, rss, cpu, code = reaped_figures(result, started, proc.returncode)
        runs.append(ChildRun(
            seconds=seconds,
            peak_rss_mb=rss,
            returncode=code,
            stdout=out,
            stderr=err,
            cpu_seconds=cpu,
        ))  # fmt: skip
    return runs


def _case(
    name: str,
    *,
    accounts: int,
    days: int,
    calls_per_day: int,
    limited: bool,
    processes: int = 1,
    server: PostgresServer | None = None,
    child_env: Mapping[str, str] | None = None,
    quotas: Sequence[QuotaGroup] | None = None,
    cli: Sequence[str] = (CLI,),
) -> dict[str, Any]:
    """One sync (or ``processes`` at once) of ``accounts`` accounts from an empty warehouse;
    with ``quotas``, the i-th process runs in the i-th cgroup (its CPU quota); ``cli``: the
    command that runs ``bulutfon-pipeline`` (``memsplit.py`` samples it from inside)."""
    folder = WORK / f"accounts_{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    extra = ["--accounts", str(accounts), "--latency-ms", str(LATENCY_MS),
             "--token-file", str(folder / "simulator.json")]  # fmt: skip
    if limited:
        extra += ["--rate-limit-rps", str(LIMIT_RPS)]
    database = None
    with simulator(days=days, calls_per_day=calls_per_day, extra=extra) as sim:
        creds = json.loads((folder / "simulator.json").read_text())
        tokens = {n: a["master_token"] for n, a in creds["accounts"].items()}
        url = None
        if server is not None:
            database = server.create_database(f"bench_accounts_{name.replace('-', '_')}")
            url = server.url(database)
        env = _env(
            sim.url,
            tokens,
            folder,
            days=days,
            warehouse_url=url,
            max_rps=LIMIT_RPS if limited and DECLARE_LIMIT else None,
        )
        env.update(child_env or {})
        names = list(tokens)
        groups = [names[i::processes] for i in range(processes)]
        cmds = [
            [*cli, "sync", "--no-progress", *(a for n in group for a in ("--account", n))]
            if processes > 1
            else [*cli, "sync", "--no-progress"]
            for group in groups
        ]
        load = load_now()
        # The other processes on the machine's cores: the simulator, the server.
        others = {"simulator": sim.process.pid}
        if server is not None:
            others["server"] = server.pid
        cpu_before = {k: tree_cpu_seconds(pid) for k, pid in others.items()}
        throttled = [q.throttled_s() for q in quotas or []]
        started = time.perf_counter()
        runs = _run_children(cmds, env, quotas)
        seconds = time.perf_counter() - started
        others_cpu = {k: round(tree_cpu_seconds(p) - cpu_before[k], 2) for k, p in others.items()}
        stats = sim.stats()
    try:
        failed = [r for r in runs if r.returncode != 0]
        if failed:
            raise RuntimeError(
                f"accounts {name}: sync exited {failed[0].returncode}: {failed[0].stderr[-1500:]}"
            )
        counts = (
            _counts_pg(server.conninfo(database))
            if server and database
            else (_counts_duckdb(folder))
        )
    finally:
        if server is not None and database is not None:
            server.drop_database(database)
        shutil.rmtree(folder, ignore_errors=True)
    calls = accounts * days * calls_per_day
    exact = counts == {n: days * calls_per_day for n in tokens}
    out = {
        "accounts": accounts,
        "calls": calls,
        "processes": processes,
        "limited_rps": LIMIT_RPS if limited else None,
        "max_rps_declared": limited and DECLARE_LIMIT,
        "latency_ms": LATENCY_MS,
        "seconds": round(seconds, 2),
        "calls_per_s": round(calls / seconds, 1),
        "peak_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
        "cpu_seconds": round(sum(r.cpu_seconds for r in runs), 2),
        "simulator_cpu_seconds": others_cpu["simulator"],
        "server_cpu_seconds": others_cpu.get("server"),
        "exact": exact,
        "rejected_429": int(stats.get("detail", {}).get("429", 0)),
        "load": load,
        "backend": "postgres" if server is not None else "duckdb",
    }
    if quotas is not None:
        out["cpu_quota_cores"] = QUOTA_CORES
        waited = zip(quotas, throttled, strict=True)
        out["throttled_s"] = [round(g.throttled_s() - before, 2) for g, before in waited]
    print(f"  accounts {name}: {accounts} x {calls // accounts} calls in {seconds:.1f} s, "
          f"{out['calls_per_s']:.0f} calls/s, peak RSS {out['peak_rss_mb']:.0f} MB, "
          f"exact {exact}", flush=True)  # fmt: skip
    return out


#: A DuckDB case's size: accounts, days, calls a day, and whether each account is limited.
Size = tuple[int, int, int, bool]


def cases(quick: bool = False) -> dict[str, Size]:
    """The section's DuckDB cases (the module's docstring), by name: 400 calls an account
    in full; ``few-cpu`` loads ``cpu``'s calls in ``few``'s accounts, more accounts at the
    same data apart from more data (``few`` loads a fifth of ``one``'s calls)."""
    many, few = (10, 3) if quick else (50, 10)
    days, per_day = (2, 20) if quick else (4, 100)
    return {
        "peer": (1, days, per_day * many, False),
        "cpu": (many, days, per_day, False),
        "one": (many, days, per_day, True),
        "few": (few, days, per_day, True),
        "few-cpu": (few, days, per_day * many // few, False),
    }


def _sized_case(name: str, size: Size, **kwargs: Any) -> dict[str, Any]:
    """:func:`_case` ``name`` of ``size`` (:func:`cases`)."""
    accounts, days, per_day, limited = size
    return _case(name, accounts=accounts, days=days, calls_per_day=per_day, limited=limited,
                 **kwargs)  # fmt: skip


def run(quick: bool) -> dict[str, Any]:
    """Every case of the section; ratios computed by the report."""
    sizes = cases(quick)
    out: dict[str, Any] = {"limit_rps": LIMIT_RPS, "latency_ms": LATENCY_MS}
    out["peer"] = _sized_case("peer", sizes["peer"])
    out.update(_paired({name: sizes[name] for name in ("cpu", "one", "few", "few-cpu")}))
    server = PostgresServer().start(durable=True)
    try:
        out["pg_one"] = _sized_case("pg-one", sizes["one"], server=server)
        out["pg_two"] = _sized_case("pg-two", sizes["one"], processes=2, server=server)
        # The same without the accounts' limits: the CPU is the limit of one process.
        out["pg_cpu_one"] = _sized_case("pg-cpu-one", sizes["cpu"], server=server)
        out["pg_cpu_two"] = _sized_case("pg-cpu-two", sizes["cpu"], processes=2, server=server)
        out.update(_quota_cases(sizes["cpu"], server))
    finally:
        server.stop()
    return out


#: How many times ``cpu``, ``one``, ``few`` and ``few_cpu`` run, alternating: ``one`` /
#: ``cpu`` is the throughput target, and this machine's speed drifts by more than 10 %
#: within minutes (session 26: the same ``cpu`` case took 59-86 s), so each keeps its
#: fastest run, with every run's time. Their peak RSS is the highest of their runs, each
#: case's of as many runs: the memory target (``one`` / ``few``) compares like with like.
PAIRED_RUNS = int(os.environ.get("BENCH_ACCOUNTS_PAIRED_RUNS", "2"))


def _paired(sized: dict[str, Size]) -> dict[str, Any]:
    """The ``sized`` cases, alternating ``PAIRED_RUNS`` times; each the fastest of its runs,
    with ``runs_s`` and ``peaks_mb``, the wall seconds and peak RSS of all of them in
    order, and the highest peak RSS (keyed with ``_``: ``few_cpu``)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sized}
    for _ in range(PAIRED_RUNS):
        for name, size in sized.items():
            runs[name].append(_sized_case(name, size))
    out = {}
    for name, done in runs.items():
        best = dict(min(done, key=lambda r: r["seconds"]))
        best["runs_s"] = [r["seconds"] for r in done]
        best["peaks_mb"] = [r["peak_rss_mb"] for r in done]
        best["exact"] = all(r["exact"] for r in done)
        best["peak_rss_mb"] = max(best["peaks_mb"])  # the memory targets' side
        out[name.replace("-", "_")] = best
    return out


def _quota_cases(size: Size, server: PostgresServer) -> dict[str, Any]:
    """``pg-cpu-one`` and ``pg-cpu-two`` (``size``: ``cpu``'s) again, each worker process held to
    ``QUOTA_CORES`` CPUs by a cgroup: as if each worker had a machine of its own of that
    size, while the simulator and the server use the rest of this one. Skipped (with the
    reason in the results) where cgroups cannot be made."""
    out: dict[str, Any] = {}
    for key, processes in (("pg_quota_one", 1), ("pg_quota_two", 2)):
        with quota_groups(processes, QUOTA_CORES, key) as groups:
            if groups is None:
                return {"quota_skipped": "no writable cgroup CPU controller (needs root)"}
            out[key] = _sized_case(key.replace("_", "-"), size, processes=processes,
                                   server=server, quotas=groups)  # fmt: skip
    return out


#: One case alone (``python benchmarks/accounts.py one BULUTFON_ACCOUNTS_AT_ONCE=24``):
#: the full run's sizes.
CASES = cases()


def main(argv: Sequence[str]) -> None:
    """Run one case of the section (DuckDB), with extra variables for the child ``sync``,
    and print its figures as JSON, with the load before and after and CPU ms per call."""
    name, assignments = argv[0], argv[1:]
    if name == "quota":  # the two quota cases, on a PostgreSQL server of their own
        server = PostgresServer().start(durable=True)
        try:
            print(json.dumps(_quota_cases(CASES["cpu"], server)))
        finally:
            server.stop()
        return
    print(json.dumps(one_case(name, assignments)))


def one_case(name: str, assignments: Sequence[str], cli: Sequence[str] = (CLI,)) -> dict[str, Any]:
    """The figures of case ``name`` of :data:`CASES`, the child ``sync`` run by ``cli``
    with the ``VAR=value`` ``assignments``, with the load before and after and CPU ms per
    call."""
    before = os.getloadavg()
    out = _sized_case(name, CASES[name], child_env=dict(a.split("=", 1) for a in assignments),
                      cli=cli)  # fmt: skip
    out["load_before_after"] = [round(x, 2) for x in (*before, *os.getloadavg())]
    out["cpu_ms_per_call"] = round(1000 * out["cpu_seconds"] / out["calls"], 2)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
