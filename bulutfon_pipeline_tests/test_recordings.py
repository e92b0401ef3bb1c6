"""Call recordings: download through the sync, idempotent re-runs, rejects and the purge.

``target`` is the warehouse (a DuckDB file, or a PostgreSQL database for the tests
parametrized with ``backend``). The purge runs on both: it downloads, rejects the removed
recordings and deletes rows and files (test_changes.py's first test syncs recordings on
both). DuckDB only, to keep the suite's time: the sync's re-runs and the 404 (the same
rows through the same code). The table's DuckDB types are checked here, PostgreSQL's in
warehouse/test_postgres.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from bulutfon_pipeline.api import BulutfonClient, ClientConfig
from bulutfon_pipeline.cli import main
from bulutfon_pipeline.recordings import (
    download_recordings,
    purge_recordings,
    recording_stem,
)
from bulutfon_pipeline.runner import SyncResult, run_sync
from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.helpers import (
    BACKENDS,
    Database,
    WarehouseTarget,
    environment,
    read_table,
)

MAGIC_EXT = {b"RIFF": "wav", b"\xff\xfb": "mp3"}


def _env(
    sim, tmp_path: Path, target: WarehouseTarget | None = None, **extra: str
) -> dict[str, str]:
    where = target.env if target else {"BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb")}
    return {
        **sim.env(auth="master"),
        **where,
        "BULUTFON_DATA_DIR": str(tmp_path / "data"),
        "BULUTFON_START_DATE": "2015-01-01",
        "BULUTFON_MAX_RETRIES": "2",
        **extra,
    }


def _expected_files(sim) -> dict[str, dict]:
    """uuid -> the row ``call_recordings`` must hold, computed from the simulator's bytes."""
    out = {}
    for row in sim.expected_tables()["cdrs"]:
        if not row["has_recording"]:
            continue
        body, _ = sim.dataset.recording(row["uuid"])
        ext = next(e for magic, e in MAGIC_EXT.items() if body.startswith(magic))
        day = row["call_date"]
        out[row["uuid"]] = {
            "path": f"recordings/{day:%Y/%m/%d}/{row['uuid']}.{ext}",
            "content_type": {"wav": "audio/wav", "mp3": "audio/mpeg"}[ext],
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    return out


def _stored(db: Database) -> dict[str, dict]:
    rows = read_table(db, "call_recordings", ["cdr_uuid", "path", "content_type", "bytes",
                                              "sha256"])  # fmt: skip
    return {row.pop("cdr_uuid"): row for row in rows}


def _recording_requests(sim) -> dict[str, int]:
    return sim.stats()["recording_uuids"]


def _downloads_enabled(env: dict[str, str]) -> bool:
    return Settings.from_env(env).download_recordings


def _recording_counts(result: SyncResult) -> dict[str, int]:
    names = ("downloaded", "skipped", "rejected", "bytes")
    return {name: result.recording_total(name) for name in names}


def test_downloads_enabled_reads_the_variable() -> None:
    assert not _downloads_enabled({})
    assert not _downloads_enabled({"BULUTFON_DOWNLOAD_RECORDINGS": "0"})
    assert _downloads_enabled({"BULUTFON_DOWNLOAD_RECORDINGS": "true"})
    assert _downloads_enabled({"BULUTFON_DOWNLOAD_RECORDINGS": " 1 "})


@pytest.mark.parametrize(
    "uuid",
    [
        "../../etc/passwd",  # would leave the day folder
        "a/b",  # a sub-folder
        "",  # no name at all
        ".hidden",  # a dot file
    ],
)
def test_unsafe_uuids_never_become_paths(uuid: str) -> None:
    with pytest.raises(ValueError):
        recording_stem(uuid, dt.date(2015, 4, 16))


def test_recording_stem_uses_the_local_call_date() -> None:
    stem = recording_stem("ab-12", dt.date(2015, 3, 9))
    assert stem == Path("recordings/2015/03/09/ab-12")


def test_sync_downloads_every_recording_once_and_rejects_removed(
    simulator_factory, target: WarehouseTarget, tmp_path: Path
) -> None:
    # v1 dialect: deleted recordings are sent as REMOVED (the seed just says "Yok").
    sim = simulator_factory(days=2, calls_per_day=40, dialect="v1", seed=5)
    data = tmp_path / "data"
    data.mkdir()
    db = target.db
    expected = _expected_files(sim)
    removed = {r["uuid"] for r in sim.expected_tables()["cdrs"] if r["call_record"] == "REMOVED"}
    assert len(expected) >= 5 and removed, "the dataset should have both kinds"
    with environment(_env(sim, tmp_path, target, BULUTFON_DOWNLOAD_RECORDINGS="1")):
        first = run_sync()
        # Exactly the recorded calls were requested, once each; REMOVED ones never.
        assert _recording_requests(sim) == dict.fromkeys(expected, 1)
        assert _stored(db) == expected
        for row in expected.values():
            body = (data / row["path"]).read_bytes()
            assert hashlib.sha256(body).hexdigest() == row["sha256"]
        rejects = [r for r in read_table(db, "load_rejects") if r["stage"] == "recording"]
        assert {r["uuid"] for r in rejects} == removed
        assert _recording_counts(first) == {
            "downloaded": len(expected), "skipped": 0, "rejected": len(removed),
            "bytes": sum(r["bytes"] for r in expected.values()),
        }  # fmt: skip

        # A sync with nothing new runs nothing; a backfill of the days checks every file,
        # finds them intact and makes no request at all.
        sim.reset_stats()
        assert run_sync().recordings == []
        days = min(first.ranges)[0], max(first.ranges)[1]
        second = run_sync(start=days[0], end=days[1])
        assert _recording_requests(sim) == {}
        assert second.recording_total("skipped") == len(expected)
        assert second.recording_total("downloaded") == 0

        # A deleted file and an altered one are fetched again; nothing else is.
        deleted, altered = sorted(expected)[:2]
        (data / expected[deleted]["path"]).unlink()
        (data / expected[altered]["path"]).write_bytes(b"RIFF" + bytes(40))
        sim.reset_stats()
        third = run_sync(start=days[0], end=days[1])
        assert _recording_requests(sim) == {deleted: 1, altered: 1}
        assert third.recording_total("downloaded") == 2
        assert _stored(db) == expected
        assert (data / expected[altered]["path"]).read_bytes() == sim.dataset.recording(altered)[0]


def test_sync_without_the_variable_downloads_nothing(simulator_factory, tmp_path: Path) -> None:
    sim = simulator_factory(days=1, calls_per_day=30)
    with environment(_env(sim, tmp_path, BULUTFON_DOWNLOAD_RECORDINGS="")):
        outcome = run_sync()
    assert outcome.recordings is None
    assert _recording_requests(sim) == {}
    assert not (tmp_path / "data" / "recordings").exists()


@pytest.fixture
def loaded(simulator_factory, target: WarehouseTarget, tmp_path: Path):
    """A warehouse (``target``) holding 3 days of calls (recordings not downloaded), its
    simulator and where it is."""
    sim = simulator_factory(days=3, calls_per_day=40, dialect="v1", seed=9)
    (tmp_path / "data").mkdir()
    with environment(_env(sim, tmp_path, target)):
        run_sync()
    return sim, target.warehouse(), target


def _client(sim, tmp_path: Path) -> BulutfonClient:
    return BulutfonClient(ClientConfig.from_env(_env(sim, tmp_path)))


def test_a_404_is_rejected_and_the_others_carry_on(loaded, tmp_path: Path) -> None:
    sim, wh, target = loaded
    data = tmp_path / "data"
    expected = _expected_files(sim)
    # The API still says YES for this call, but its file is gone: the server answers 404.
    gone = sorted(r["uuid"] for r in sim.expected_tables()["cdrs"]
                  if r["call_record"] == "REMOVED")[0]  # fmt: skip
    with wh.transaction() as con:
        con.execute("UPDATE cdrs SET has_recording = true, call_record = 'YES' WHERE uuid = ?",
                    [gone])  # fmt: skip
    first_day = min(r["call_date"] for r in sim.expected_tables()["cdrs"])
    last_day = max(r["call_date"] for r in sim.expected_tables()["cdrs"])
    with _client(sim, tmp_path) as client:
        summary = download_recordings(client, wh, data_dir=data, start=first_day, end=last_day,
                                      batch_size=7)  # fmt: skip
    removed_left = {r["uuid"] for r in sim.expected_tables()["cdrs"]
                    if r["call_record"] == "REMOVED"} - {gone}  # fmt: skip
    assert summary.downloaded == len(expected)
    # the 404, plus every call still marked REMOVED (rejected without a request)
    assert summary.rejected == 1 + len(removed_left)
    assert _recording_requests(sim) == dict.fromkeys([*expected, gone], 1)
    rejects = {r["uuid"]: r["reason"] for r in read_table(target.db, "load_rejects")
               if r["stage"] == "recording"}  # fmt: skip
    assert set(rejects) == removed_left | {gone}
    assert "404" in rejects[gone]
    assert sim.env(auth="master")["BULUTFON_ACCESS_TOKEN"] not in rejects[gone]
    assert _stored(target.db) == expected
    # Rejected calls are not requested again unless refetch.
    sim.reset_stats()
    with _client(sim, tmp_path) as client:
        again = download_recordings(client, wh, data_dir=data, start=first_day, end=last_day)
    assert _recording_requests(sim) == {}
    assert (again.downloaded, again.skipped, again.rejected) == (0, len(expected), 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_purge_deletes_rows_then_files_and_a_rerun_sweeps_after_a_crash(
    loaded, tmp_path: Path
) -> None:
    sim, wh, target = loaded
    data = tmp_path / "data"
    days = sorted({r["call_date"] for r in sim.expected_tables()["cdrs"]})
    with _client(sim, tmp_path) as client:
        download_recordings(client, wh, data_dir=data, start=days[0], end=days[-1])
    expected = _expected_files(sim)
    by_day = {day: {u for u, r in expected.items() if f"{day:%Y/%m/%d}" in r["path"]}
              for day in days}  # fmt: skip
    assert all(by_day.values())

    # "Crash" after the row transaction of a purge before day 2: rows gone, files left.
    assert wh.delete_recordings_before(days[1]) == sorted(
        expected[u]["path"] for u in by_day[days[0]]
    )
    assert all((data / expected[u]["path"]).exists() for u in by_day[days[0]])
    # Running the purge again deletes the files the crash left behind, and their folder.
    summary = purge_recordings(wh, data_dir=data, before=days[1])
    assert (summary.rows, summary.files, summary.stray_files) == (0, 0, len(by_day[days[0]]))
    assert summary.folders == [f"recordings/{days[0]:%Y/%m/%d}"]
    assert not (data / f"recordings/{days[0]:%Y/%m/%d}").exists()

    # The command: rows and files of day 2 go, day 3 stays untouched.
    env = _env(sim, tmp_path, target)
    with environment(env):
        result = CliRunner().invoke(main, ["purge-recordings", "--before", str(days[2])])
    assert result.exit_code == 0, result.output
    assert f"{len(by_day[days[1]])} rows, {len(by_day[days[1]])} files" in result.output
    assert set(_stored(target.db)) == by_day[days[2]]
    on_disk = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()}
    assert on_disk == {expected[u]["path"] for u in by_day[days[2]]}


def test_call_recordings_table_is_in_the_schema(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.ensure_schema()
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'call_recordings' ORDER BY ordinal_position"
        ).fetchall()
    finally:
        con.close()
    assert columns == [
        ("account", "VARCHAR"), ("cdr_uuid", "VARCHAR"), ("path", "VARCHAR"),
        ("content_type", "VARCHAR"),
        ("bytes", "BIGINT"), ("sha256", "VARCHAR"),
        ("downloaded_at", "TIMESTAMP WITH TIME ZONE"),
    ]  # fmt: skip
