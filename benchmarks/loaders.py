"""Benchmark 2: normalize + load, raw NDJSON in -> tables committed in DuckDB.

``python benchmarks/loaders.py KIND NDJSON DB [--max-seconds S] [--url URL]`` runs one
contender in its own process (the harness reads its peak RSS with ``wait4``) and prints one
JSON line. KIND is ``ours``, ``naive``, ``dlt``, ``duckdb``, ``duckdb-batched``, or, into the
PostgreSQL database at ``--url`` (a SQLAlchemy URL; DB's folder then holds only dlt's
working files), ``ours-pg`` or ``dlt-pg``. One NDJSON line is one call's detail (the ``cdr``
object), as the simulator serves it.

* ``ours``: read lines -> each as the API's body ``{"cdr": <line>}`` through the API
  client's decoder (``jsonio.decode_keeping_text``) -> ``normalize_details`` ->
  ``Warehouse.load_details`` per batch of ``PIPELINE_BATCH`` (the pipeline's batch,
  ``settings.DEFAULT_DETAIL_BATCH_SIZE``) through ``Warehouse.detail_writer`` as
  ``loads.load_details`` does, the payloads handed over as the client hands them (each
  keeps its exact text for ``raw_cdr_details``).
* ``naive``: ``pandas.json_normalize`` per record (call, flow steps, originations), then
  ``DataFrame.to_sql`` per batch of 500 through SQLAlchemy (duckdb-engine).
* ``dlt``: a dlt pipeline, DuckDB destination, the parsed records; dlt builds its nested
  tables (``cdrs__call_flow``, ``cdrs__call_flow__origination``) itself. ``append``, its
  cheapest write disposition (ours upserts, which is more work).
* ``duckdb``: DuckDB alone: ``read_json`` + ``UNNEST`` in SQL into the same tables as ours,
  with the same canonical columns (the ceiling), all calls in one transaction.
* ``duckdb-batched``: the same SQL, one transaction per pipeline batch, with the pipeline's
  DuckDB settings: the ceiling under the pipeline's constraints.

* ``ours-pg``: ``ours`` into PostgreSQL: ``Warehouse.from_settings`` on a
  ``Settings(warehouse_url=URL, warehouse_schema="public")``, the same batches and calls.
* ``dlt-pg``: ``dlt`` with its ``postgres`` destination (psycopg2, its default loader
  file format), ``append``.

After the clock stops, ``ours``, ``ours-pg`` and ``dlt-pg`` count what their tables hold
(``tables``, plus a few sums over ``cdrs`` for ours: the harness compares the two backends).

``naive`` and ``dlt`` can take very long at 100,000 calls, so they stop taking records
after ``--max-seconds`` (naive) or a quarter of it (dlt's extract step, which precedes
its normalize and load steps); their throughput is measured on the calls they loaded
(rows/s is what we compare) and the report marks them "time-capped".
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bulutfon_pipeline.settings import DEFAULT_DETAIL_BATCH_SIZE

BATCH = 500  # the naive baseline's batch
#: The pipeline's detail batch: ours and duckdb-batched commit this many calls at a time.
PIPELINE_BATCH = DEFAULT_DETAIL_BATCH_SIZE


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line.rstrip("\n")


def _batches(path: Path, size: int = BATCH) -> Iterator[list[str]]:
    lines = _lines(path)
    while batch := list(itertools.islice(lines, size)):
        yield batch


def _body_batches(path: Path) -> Iterator[list[bytes]]:
    """The lines as bytes, as the API client receives bodies."""
    with path.open("rb") as fh:
        lines = (line.rstrip(b"\n") for line in fh if line.strip())
        while batch := list(itertools.islice(lines, PIPELINE_BATCH)):
            yield batch


def _count(con: Any, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def ours(path: Path, db: Path, max_seconds: float) -> dict[str, Any]:
    from bulutfon_pipeline.warehouse import Warehouse

    return _ours_into(Warehouse(db), path)


def ours_pg(path: Path, db: Path, max_seconds: float) -> dict[str, Any]:
    from bulutfon_pipeline.settings import Settings
    from bulutfon_pipeline.warehouse import Warehouse

    settings = Settings(warehouse_url=_url(), warehouse_schema="public")
    return _ours_into(Warehouse.from_settings(settings), path)


def _ours_into(warehouse: Any, path: Path) -> dict[str, Any]:
    """The pipeline's own load: ``ensure_schema``, then ``load_details`` per batch."""
    from bulutfon_pipeline.jsonio import decode_keeping_text as decode
    from bulutfon_pipeline.normalize import normalize_details

    warehouse.ensure_schema()
    calls = steps = origs = 0
    # As loads.load_details does: one session, each batch normalised while the previous
    # one is written (in the background on PostgreSQL, at once on DuckDB).
    with warehouse.session(), warehouse.detail_writer() as writer:
        for batch in _body_batches(path):
            # the API's body, decoded as the client decodes it (keeping the cdr's text)
            payloads = [decode(b'{"cdr": ' + line + b"}", "cdr")["cdr"] for line in batch]
            normalized = normalize_details(payloads)
            raw = [(p["uuid"], p) for p in payloads]
            writer.submit(raw, normalized, fetched_at=dt.datetime.now(dt.UTC))
            calls += len(normalized.cdrs)
            steps += len(normalized.call_flow_steps)
            origs += len(normalized.originations)
    return {"calls": calls, "rows": calls + steps + origs, "complete": True}


def naive(path: Path, db: Path, max_seconds: float) -> dict[str, Any]:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(f"duckdb:///{db}")
    started = time.perf_counter()
    calls = rows = 0
    complete = True
    for batch in _batches(path):
        cdrs, steps, origs = [], [], []
        for line in batch:
            record = json.loads(line)
            flow = record.get("call_flow") or []
            cdrs.append(pd.json_normalize({k: v for k, v in record.items() if k != "call_flow"}))
            if flow:
                steps.append(
                    pd.json_normalize(
                        [{k: v for k, v in s.items() if k != "origination"} for s in flow]
                    ).assign(cdr_uuid=record["uuid"])
                )
                with_origs = [s for s in flow if s.get("origination")]
                if with_origs:
                    origs.append(
                        pd.json_normalize(
                            {"uuid": record["uuid"], "call_flow": with_origs},
                            record_path=["call_flow", "origination"],
                            meta=["uuid"],
                        )
                    )
        with engine.begin() as con:
            for name, frames in (
                ("cdrs", cdrs),
                ("call_flow_steps", steps),
                ("originations", origs),
            ):
                if frames:
                    frame = pd.concat(frames, ignore_index=True)
                    frame.to_sql(name, con, if_exists="append", index=False)
                    rows += len(frame)
        calls += len(batch)
        if time.perf_counter() - started > max_seconds:
            complete = False
            break
    engine.dispose()
    return {"calls": calls, "rows": rows, "complete": complete}


def dlt_load(path: Path, db: Path, max_seconds: float) -> dict[str, Any]:
    import dlt

    started = time.perf_counter()
    complete = [True]

    def records() -> Iterator[dict[str, Any]]:
        # dlt extracts, then normalizes, then loads: give extraction a quarter of the
        # time budget so a 100,000-call file finishes; rows/s is measured on what loaded.
        for line in _lines(path):
            if time.perf_counter() - started > max_seconds / 4:
                complete[0] = False
                return
            yield json.loads(line)

    pipeline = dlt.pipeline(
        pipeline_name="bench_" + db.stem,
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name="bench",
        pipelines_dir=str(db.parent / ("dlt_" + db.stem)),
    )
    pipeline.run(records(), table_name="cdrs", write_disposition="append")
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    counts = {
        t: _count(con, f"bench.{t}")
        for t in ("cdrs", "cdrs__call_flow", "cdrs__call_flow__origination")
    }
    con.close()
    return {"calls": counts["cdrs"], "rows": sum(counts.values()), "complete": complete[0],
            "tables": counts}  # fmt: skip


def dlt_pg(path: Path, db: Path, max_seconds: float) -> dict[str, Any]:
    """``dlt`` into PostgreSQL (its ``postgres`` destination), time-capped the same way."""
    from urllib.parse import quote

    import dlt
    from sqlalchemy.engine import make_url

    started = time.perf_counter()
    complete = [True]

    def records() -> Iterator[dict[str, Any]]:
        for line in _lines(path):
            if time.perf_counter() - started > max_seconds / 4:
                complete[0] = False
                return
            yield json.loads(line)

    # dlt's credentials require a host and a password. The host is the socket's folder,
    # percent-encoded in the URL's host (libpq decodes it: a host starting with "/" is a
    # Unix socket folder); the password is unused (the server trusts local connections).
    url = make_url(_url())
    host = quote(str(url.query["host"]), safe="")
    credentials = (f"postgresql://{url.username}:unused@{host}:{url.query['port']}/"
                   f"{url.database}")  # fmt: skip
    pipeline = dlt.pipeline(
        pipeline_name="bench_pg_" + db.stem,
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name="bench",
        pipelines_dir=str(db.parent / ("dlt_" + db.stem)),
    )
    pipeline.run(records(), table_name="cdrs", write_disposition="append")
    return {"complete": complete[0]}


# The canonical vocabulary of docs/architecture.md, in SQL.
_DUCKDB_SQL = """
CREATE TEMP TABLE src AS
SELECT * FROM read_json(?, format = 'newline_delimited', columns = {
    uuid: 'VARCHAR', bf_calltype: 'VARCHAR', direction: 'VARCHAR', caller: 'VARCHAR',
    callee: 'VARCHAR', extension: 'VARCHAR', call_time: 'VARCHAR', answer_time: 'VARCHAR',
    hangup_time: 'VARCHAR', call_record: 'VARCHAR', hangup_cause: 'VARCHAR',
    hangup_state: 'VARCHAR', missing_call: 'BOOLEAN', call_price: 'VARCHAR',
    call_flow: 'STRUCT(callee VARCHAR, start_time VARCHAR, answer_time VARCHAR,
        hangup_time VARCHAR, redirection VARCHAR, redirection_target VARCHAR,
        origination STRUCT(destination VARCHAR, start_time VARCHAR, answer_time VARCHAR,
            hangup_time VARCHAR, result VARCHAR)[])[]'
});
CREATE MACRO top_t(s) AS timezone('UTC', strptime(s, '%d-%m-%Y %H:%M')::TIMESTAMP
    AT TIME ZONE 'Europe/Istanbul');
CREATE MACRO flow_t(s) AS timezone('UTC', strptime(s, '%d/%m/%Y - %H:%M:%S')::TIMESTAMP
    AT TIME ZONE 'Europe/Istanbul');
INSERT INTO raw_cdr_details BY NAME
SELECT 'default' AS account,
       json_extract_string(json, '$.uuid') AS uuid, now() AS fetched_at, json AS payload
FROM read_ndjson_objects(?);
INSERT INTO cdrs BY NAME
SELECT 'default' AS account,
       uuid, bf_calltype AS call_type, direction, caller, callee, extension,
       top_t(call_time) AS call_time, top_t(answer_time) AS answer_time,
       top_t(hangup_time) AS hangup_time,
       (top_t(call_time) AT TIME ZONE 'Europe/Istanbul')::DATE AS call_date,
       answer_time IS NOT NULL AS answered,
       date_diff('second', top_t(call_time), coalesce(top_t(answer_time), top_t(hangup_time)))
           AS ring_seconds,
       coalesce(date_diff('second', top_t(answer_time), top_t(hangup_time)), 0) AS talk_seconds,
       call_record, call_record IN ('Var', 'YES') AS has_recording,
       hangup_cause,
       CASE trim(hangup_cause) WHEN 'Normal' THEN 'NORMAL_CLEARING'
           WHEN 'Aramayı başlatan cevaplanmadan iptal ediyor.' THEN 'ORIGINATOR_CANCEL'
           WHEN 'Meşgul' THEN 'USER_BUSY' WHEN 'Cevap yok' THEN 'NO_ANSWER' END
           AS hangup_cause_code,
       hangup_state,
       CASE trim(hangup_state) WHEN 'İstemci tarafından sonlandırılan çağrı' THEN 'recv_bye'
           WHEN 'Sistem tarafından sonlandırılan çağrı' THEN 'send_bye'
           WHEN 'Arayan tarafından iptal edildi' THEN 'recv_cancel'
           WHEN 'Reddedildi' THEN 'send_refuse' END AS hangup_state_code,
       coalesce(missing_call, direction = 'IN' AND answer_time IS NULL) AS missing_call,
       TRY_CAST(call_price AS DECIMAL(12, 4)) AS call_price, now() AS loaded_at
FROM src;
CREATE TEMP TABLE steps AS
SELECT uuid AS cdr_uuid, i - 1 AS step_index, call_flow[i] AS s
FROM (SELECT uuid, call_flow, generate_subscripts(call_flow, 1) AS i FROM src);
INSERT INTO call_flow_steps BY NAME
SELECT 'default' AS account,
       cdr_uuid, step_index, s.callee AS callee, flow_t(s.start_time) AS start_time,
       flow_t(s.answer_time) AS answer_time, flow_t(s.hangup_time) AS hangup_time,
       s.redirection AS redirection,
       CASE WHEN s.redirection LIKE 'Menüye Yönlendi - (%' THEN 'REDIRECTED_TO_MENU'
            WHEN s.redirection LIKE 'Gruba Yönlendi - (%' THEN 'REDIRECTED_TO_GROUP'
            WHEN s.redirection LIKE 'Dahiliye Yönlendi - (%' THEN 'REDIRECTED_TO_EXTENSION'
            WHEN s.redirection = 'Menüye bağlanılıyor' THEN 'CONNECTING_TO_MENU'
            WHEN s.redirection = 'Gruba bağlanılıyor' THEN 'CONNECTING_TO_GROUP'
            WHEN s.redirection = 'Dahiliye bağlanılıyor' THEN 'CONNECTING_TO_EXTENSION'
            ELSE 'OTHER' END AS redirection_kind,
       nullif(regexp_extract(s.redirection, '\\((.*)\\)$', 1), '') AS redirection_target
FROM steps;
INSERT INTO originations BY NAME
SELECT 'default' AS account,
       cdr_uuid, step_index, j - 1 AS attempt_index, o.destination AS destination,
       flow_t(o.start_time) AS start_time, flow_t(o.answer_time) AS answer_time,
       flow_t(o.hangup_time) AS hangup_time, o.result AS result,
       CASE o.result WHEN 'Cevapladı' THEN 'ANSWERED' WHEN 'ANSWERED' THEN 'ANSWERED'
           WHEN 'Başkası açtı' THEN 'LOSE_RACE' WHEN 'LOSE_RACE' THEN 'LOSE_RACE'
           ELSE 'OTHER' END AS outcome,
       o.answer_time IS NOT NULL AS answered
FROM (SELECT cdr_uuid, step_index, s.origination[j] AS o, j
      FROM (SELECT cdr_uuid, step_index, s, generate_subscripts(s.origination, 1) AS j
            FROM steps WHERE s.origination IS NOT NULL));
"""


def duckdb_native(path: Path, db: Path, max_seconds: float) -> dict[str, Any]:
    import duckdb

    from bulutfon_pipeline.warehouse import Warehouse

    Warehouse(db).ensure_schema()
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("BEGIN TRANSACTION")
    statements = [s.strip() for s in _DUCKDB_SQL.split(";\n") if s.strip()]
    for statement in statements:
        params = [str(path)] * statement.count("?")
        con.execute(statement, params)
    con.execute("COMMIT")
    counts = [_count(con, t) for t in ("cdrs", "call_flow_steps", "originations")]
    con.close()
    return {"calls": counts[0], "rows": sum(counts), "complete": True}


def duckdb_batched(path: Path, db: Path, max_seconds: float) -> dict[str, Any]:
    """The ceiling's own SQL under the pipeline's constraints: one transaction per
    ``PIPELINE_BATCH`` calls (a crash loses at most the batch in flight) and the pipeline's DuckDB
    settings (64 MB memory limit). Each batch's lines go through a small NDJSON file,
    which ``read_json`` needs. Still no validation and no rejects: a lower bound for any
    design that commits per batch."""
    import duckdb

    from bulutfon_pipeline.settings import DUCKDB_CHECKPOINT_THRESHOLD, DUCKDB_MEMORY_LIMIT
    from bulutfon_pipeline.warehouse import Warehouse

    Warehouse(db).ensure_schema()
    config = {"memory_limit": DUCKDB_MEMORY_LIMIT,
              "checkpoint_threshold": DUCKDB_CHECKPOINT_THRESHOLD}  # fmt: skip
    con = duckdb.connect(str(db), config=config)
    con.execute("SET TimeZone = 'UTC'")
    statements = [
        s.strip().replace("CREATE TEMP TABLE", "CREATE OR REPLACE TEMP TABLE")
        .replace("CREATE MACRO", "CREATE OR REPLACE MACRO")
        for s in _DUCKDB_SQL.split(";\n") if s.strip()
    ]  # fmt: skip
    chunk = db.parent / "batch.ndjson"
    for batch in _batches(path, PIPELINE_BATCH):
        chunk.write_text("\n".join(batch) + "\n", encoding="utf-8")
        con.execute("BEGIN TRANSACTION")
        for statement in statements:
            con.execute(statement, [str(chunk)] * statement.count("?"))
        con.execute("COMMIT")
    counts = [_count(con, t) for t in ("cdrs", "call_flow_steps", "originations")]
    con.close()
    return {"calls": counts[0], "rows": sum(counts), "complete": True}


_URL: list[str] = []


def _url() -> str:
    """``--url``: the PostgreSQL database of the ``-pg`` contenders."""
    if not _URL:
        raise SystemExit("this contender needs --url postgresql+psycopg://...")
    return _URL[0]


#: What the warehouse holds, the same SQL on both backends: row counts and a few sums
#: that depend on every parsed instant (ring and talk seconds, answered calls).
_CHECK_SQL = {
    "cdrs": "SELECT count(*) FROM cdrs",
    "call_flow_steps": "SELECT count(*) FROM call_flow_steps",
    "originations": "SELECT count(*) FROM originations",
    "raw_cdr_details": "SELECT count(*) FROM raw_cdr_details",
    "distinct_uuids": "SELECT count(DISTINCT uuid) FROM cdrs",
    "ring_seconds": "SELECT sum(ring_seconds) FROM cdrs",
    "talk_seconds": "SELECT sum(talk_seconds) FROM cdrs",
    "answered": "SELECT count(*) FROM cdrs WHERE answered",
    "answered_originations": "SELECT count(*) FROM originations WHERE answered",
}
#: dlt's own tables (its nested tables for the call flow), in its dataset.
_DLT_TABLES = ("cdrs", "cdrs__call_flow", "cdrs__call_flow__origination")


def check_duckdb(db: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return {name: int(con.execute(sql).fetchone()[0] or 0) for name, sql in _CHECK_SQL.items()}
    finally:
        con.close()


def _pg_values(queries: dict[str, str]) -> dict[str, int]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(_url())
    con = psycopg.connect(dbname=url.database, user=url.username, **url.query)  # type: ignore[arg-type]
    try:
        out = {}
        for name, sql in queries.items():
            row = con.execute(sql).fetchone()  # type: ignore[arg-type]
            out[name] = int(row[0] or 0) if row else 0
        return out
    finally:
        con.close()


def check_pg(db: Path) -> dict[str, Any]:
    return _pg_values(_CHECK_SQL)


def check_dlt_pg(db: Path) -> dict[str, Any]:
    counts = _pg_values({t: f"SELECT count(*) FROM bench.{t}" for t in _DLT_TABLES})  # noqa: S608
    return {"calls": counts["cdrs"], "rows": sum(counts.values()), "tables": counts}


KINDS = {
    "ours": ours,
    "naive": naive,
    "dlt": dlt_load,
    "duckdb": duckdb_native,
    "duckdb-batched": duckdb_batched,
    "ours-pg": ours_pg,
    "dlt-pg": dlt_pg,
}
#: Run after the clock stops: what the contender's tables hold.
CHECKS = {
    "ours": lambda db: {"tables": check_duckdb(db)},
    "ours-pg": lambda db: {"tables": check_pg(db)},
    "dlt-pg": check_dlt_pg,
}
#: Imported before the clock starts: import time is start-up, not load throughput.
#: ``ensure_schema`` imports the migrations (alembic) on first use: preloaded as well (they
#: were about 2 % of ours-pg's samples in a py-spy profile, ``ANALYSIS.md``).
_MIGRATIONS = ("bulutfon_pipeline.warehouse.migrate", "bulutfon_pipeline.warehouse.schema_setup")
PRELOAD = {
    "ours": (
        "bulutfon_pipeline.normalize",
        "bulutfon_pipeline.warehouse",
        "bulutfon_pipeline.warehouse.duckdb_migrate",
        *_MIGRATIONS,
    ),
    "naive": ("pandas", "sqlalchemy", "duckdb_engine"),
    "dlt": ("dlt", "dlt.destinations", "duckdb"),
    "duckdb": ("duckdb", "bulutfon_pipeline.warehouse"),
    "duckdb-batched": ("duckdb", "bulutfon_pipeline.warehouse"),
    "ours-pg": (
        "bulutfon_pipeline.normalize",
        "bulutfon_pipeline.warehouse",
        "bulutfon_pipeline.warehouse.postgres_backend",
        *_MIGRATIONS,
    ),
    "dlt-pg": ("dlt", "dlt.destinations", "psycopg2"),
}


def main() -> None:
    kind, path, db = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    max_seconds = (
        float(sys.argv[sys.argv.index("--max-seconds") + 1]) if "--max-seconds" in sys.argv else 1e9
    )
    if "--url" in sys.argv:
        _URL.append(sys.argv[sys.argv.index("--url") + 1])
    for module in PRELOAD[kind]:
        importlib.import_module(module)
    started = time.perf_counter()
    result = KINDS[kind](path, db, max_seconds)
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if kind in CHECKS:
        result.update(CHECKS[kind](db))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
