"""The pipeline on the v2 API (``BULUTFON_API_VERSION=v2``) against the simulator, over
real HTTP, into a DuckDB file: exact tables and recordings, the time-filtered listing
(measured by the simulator's request counts against v1's), and the CLI's one-line
errors for a missing key or a v1 token. The dialect comparison and the change tests run
v2 too (test_pipeline.py, test_changes.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bulutfon_pipeline.cli import main
from bulutfon_pipeline.replay import replay_details
from bulutfon_pipeline.runner import run_sync
from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.helpers import (
    assert_tables_match,
    environment,
    read_table,
    table_snapshot,
)

LOOKBACK_HOURS = 6


def _env(sim, folder: Path, **extra: str) -> dict[str, str]:
    return {
        **sim.env(),
        "BULUTFON_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        "BULUTFON_WAREHOUSE_URL": "",
        "BULUTFON_DATA_DIR": str(folder),
        "BULUTFON_START_DATE": "2015-01-01",
        "BULUTFON_MAX_RETRIES": "2",
        **extra,
    }


def _requests(sim, endpoint: str) -> int:
    return sum(int(n) for n in sim.stats()[endpoint].values())


def _after_local_midnight(sim) -> str:
    """Add a call at about 01:30 local on the newest day (its UTC date is the day before)."""
    newest = sim.dataset.calls[0].call_time
    target = dt.datetime.combine(newest.astimezone(LOCAL_TZ).date(), dt.time(1, 45), LOCAL_TZ)
    (uuid,) = sim.add_calls(1, "late", hours_ago=(newest - target).total_seconds() / 3600)
    return uuid


def _synced_twice(sim, folder: Path, **extra: str) -> tuple[dict[str, Any], int]:
    """A first sync, then a sync with nothing new (which must change nothing and fetch no
    detail); returns the simulator's stats of the first and the listing pages the second
    one read."""
    with environment(_env(sim, folder, BULUTFON_PAGE_SIZE="10",
                          BULUTFON_LOOKBACK_HOURS=str(LOOKBACK_HOURS), **extra)):  # fmt: skip
        run_sync()
        before = table_snapshot(folder / "warehouse.duckdb")
        first = sim.stats()
        sim.reset_stats()
        run_sync()
    assert _requests(sim, "detail") == 0
    assert table_snapshot(folder / "warehouse.duckdb") == before
    return first, _requests(sim, "listing")


def test_v2_loads_exact_tables_and_recordings_and_its_no_op_sync_reads_fewer_pages_than_v1(
    simulator_factory, tmp_path: Path
) -> None:
    knobs = dict(days=3, calls_per_day=25, seed=21, recording_share=0.5,
                 missing_detail_count=1, malformed_count=2, unknown_field_count=2)  # fmt: skip
    sim = simulator_factory(dialect="v2", **knobs)
    early = _after_local_midnight(sim)
    calls = sim.dataset.calls
    v2 = tmp_path / "v2"
    v2.mkdir()
    first, no_op = _synced_twice(sim, v2, BULUTFON_DOWNLOAD_RECORDINGS="1")
    pages = {"v2": no_op}
    db = v2 / "warehouse.duckdb"
    expected = sim.expected_tables()
    assert len(expected["load_rejects"]) == 3
    # As sent: call_record is the recording's URL or NO, and caller_extension the extension.
    assert any(r["call_record"].startswith(sim.url + "/v2/cdr/") for r in expected["cdrs"])
    assert any(r["extension"] for r in expected["cdrs"])
    assert_tables_match(db, expected)
    loaded = {r["uuid"]: r for r in read_table(db, "cdrs")}
    assert loaded[early]["call_date"] == calls[0].call_time.astimezone(LOCAL_TZ).date()
    # Every detail on its dated path at once (no look-up), the listing read once.
    assert first["detail"] == {"200": len(calls) - 1, "404": 1}
    assert sum(first["listing"].values()) == math.ceil(len(calls) / 10)
    # Each recording downloaded once, from its URL, into its local day's folder.
    recorded = {r["uuid"] for r in expected["cdrs"] if r["has_recording"]}
    assert recorded and first["recording_uuids"] == dict.fromkeys(recorded, 1)
    stored = {r["cdr_uuid"]: r for r in read_table(db, "call_recordings")}
    assert set(stored) == recorded
    for uuid, row in stored.items():
        body, _ = sim.dataset.recording(uuid)
        assert hashlib.sha256((v2 / row["path"]).read_bytes()).hexdigest() == row["sha256"]
        assert hashlib.sha256(body).hexdigest() == row["sha256"]
        assert row["path"].startswith(f"recordings/{loaded[uuid]['call_date']:%Y/%m/%d}/")
    # The stored payloads are v2's own text; a replay reads them as v2 again.
    raw = {r["uuid"]: r["payload"] for r in read_table(db, "raw_cdr_details")}
    assert any('"caller_extension"' in str(text) for text in raw.values())
    replayed = replay_details(Warehouse(db))
    assert replayed.payloads == len(raw) and replayed.rejected == 2
    assert_tables_match(db, expected)
    # A recording removed at the source: v2 says NO where v1 says REMOVED. The next sync
    # re-fetches that call alone, and our copy goes too (mirrored, as on v1).
    gone = sorted(stored)[0]
    url = loaded[gone]["call_record"]
    sim.change_call(gone, call_record="REMOVED")
    with environment(_env(sim, v2, BULUTFON_DOWNLOAD_RECORDINGS="1",
                          BULUTFON_LOOKBACK_HOURS="100")):  # fmt: skip
        run_sync()
    assert sim.stats()["detail_uuids"] == {gone: 1}
    assert not (v2 / stored[gone]["path"]).exists()
    assert {r["cdr_uuid"] for r in read_table(db, "call_recordings")} == recorded - {gone}
    changes = {(r["uuid"], r["field"], r["old_value"], r["new_value"])
               for r in read_table(db, "cdr_changes")}  # fmt: skip
    assert (gone, "call_record", url, "NO") in changes
    assert_tables_match(db, sim.expected_tables())

    # The same calls on v1 (same seed): its no-op sync pages from the newest until a page
    # is wholly older than the mark minus the lookback; v2 asks for the recent calls only.
    v1_sim = simulator_factory(dialect="v1", **knobs)
    assert _after_local_midnight(v1_sim) == early and v1_sim.dataset.uuids == sim.dataset.uuids
    v1 = tmp_path / "v1"
    v1.mkdir()
    _, pages["v1"] = _synced_twice(v1_sim, v1)
    since = calls[0].call_time - dt.timedelta(hours=LOOKBACK_HOURS)
    recent = sum(c.call_time >= since for c in calls)
    assert pages["v2"] == math.ceil(recent / 10)
    assert pages["v1"] == min(math.ceil(recent / 10) + 1, math.ceil(len(calls) / 10))
    assert pages["v2"] < pages["v1"]


@pytest.mark.parametrize(
    "env, message",
    [
        # v2 without a key
        ({"BULUTFON_ACCESS_TOKEN": ""}, "No Bulutfon API key: set BULUTFON_API_KEY"),
        # a v1 master token on v2
        (
            {"BULUTFON_ACCESS_TOKEN": "v1-master-token-0123"},
            "a v1 token (BULUTFON_ACCESS_TOKEN or OAuth) does not work on v2",
        ),
    ],
)
def test_v2_without_a_key_exits_2_with_one_line(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    base = {
        "BULUTFON_API_VERSION": "v2",
        "BULUTFON_API_KEY": "",
        "BULUTFON_CLIENT_ID": "",
        "BULUTFON_CLIENT_SECRET": "",
        "BULUTFON_REFRESH_TOKEN": "",
        "BULUTFON_API_URL": "http://127.0.0.1:9",
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "BULUTFON_WAREHOUSE_URL": "",
        "BULUTFON_DATA_DIR": str(tmp_path),
    }
    with environment({**base, **env}):
        result = CliRunner().invoke(main, ["sync", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert "v1-master-token-0123" not in result.output
