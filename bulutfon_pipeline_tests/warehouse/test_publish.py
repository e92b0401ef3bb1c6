"""The analysts' copy (publish) and `bulutfon-pipeline sql` on it, with exact rows."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from bulutfon_pipeline.settings import Settings, analytics_path_for
from bulutfon_pipeline.warehouse import Warehouse, WarehouseError
from bulutfon_pipeline.warehouse.publish import publish_analytics
from bulutfon_pipeline_tests.helpers import table_snapshot

#: Values that a CSV or JSON writer can get wrong: commas, quotes, newlines, NULLs, unicode.
QUERY = "SELECT i, s, n, d FROM samples ORDER BY i"


def _fill(warehouse: Warehouse, rows: int = 5) -> None:
    with warehouse.transaction() as con:
        con.execute(
            "CREATE OR REPLACE TABLE samples AS SELECT range AS i, "
            "concat('a,\"b', chr(10), 'ç', range) AS s, "
            "CASE WHEN range % 2 = 0 THEN NULL ELSE range * 10 END AS n, "
            "DATE '2015-03-01' + range::INTEGER AS d FROM range(?)",
            [rows],
        )


def _direct(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(QUERY).fetchall()
    finally:
        con.close()


def _sql(args: list[str], db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULUTFON_")}
    return subprocess.run(
        [sys.executable, "-m", "bulutfon_pipeline.cli", "sql", *args],
        env={**env, "BULUTFON_DUCKDB_PATH": str(db)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def warehouse(duckdb_warehouse: Warehouse) -> Warehouse:
    """The analysts' copy is a DuckDB file's (a server needs none)."""
    return duckdb_warehouse


@pytest.fixture
def published(warehouse: Warehouse) -> Path:
    """The warehouse with ``samples`` rows, published beside it; the warehouse's path."""
    _fill(warehouse)
    publish_analytics(warehouse, analytics_path_for(warehouse.path))
    return warehouse.path


def test_the_default_analysts_file_sits_beside_the_warehouse(tmp_path: Path) -> None:
    assert analytics_path_for(Path("data/bulutfon.duckdb")) == Path(
        "data/bulutfon.analytics.duckdb"
    )
    settings = Settings.from_env({"BULUTFON_DUCKDB_PATH": str(tmp_path / "w.duckdb")})
    assert settings.analytics_path == tmp_path / "w.analytics.duckdb"
    assert settings.lock_timeout_s == 600
    chosen = Settings.from_env(
        {"BULUTFON_ANALYTICS_PATH": "/srv/a.duckdb", "BULUTFON_LOCK_TIMEOUT_S": "5"}
    )
    assert chosen.analytics_path == Path("/srv/a.duckdb") and chosen.lock_timeout_s == 5


def test_publish_copies_every_table_and_replaces_the_previous_copy(
    warehouse: Warehouse,
) -> None:
    target = analytics_path_for(warehouse.path)
    _fill(warehouse, rows=3)
    first = publish_analytics(warehouse, target)
    assert first.path == target and first.bytes == target.stat().st_size
    assert table_snapshot(target) == table_snapshot(warehouse.path)
    assert _direct(target) == _direct(warehouse.path) and len(_direct(target)) == 3
    # A stale WAL beside the copy (someone opened it for writing) must not be replayed.
    target.with_name(target.name + ".wal").write_bytes(b"junk")
    _fill(warehouse, rows=7)
    publish_analytics(warehouse, target)
    assert _direct(target) == _direct(warehouse.path) and len(_direct(target)) == 7
    assert not target.with_name(target.name + ".wal").exists()
    assert not target.with_name(target.name + ".tmp").exists()


def test_publish_refuses_the_warehouse_itself(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="is the warehouse itself"):
        publish_analytics(warehouse, warehouse.path)


def test_sql_prints_a_table_of_the_exact_rows(published: Path) -> None:
    result = _sql(["SELECT i, n FROM samples ORDER BY i"], published)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "│" in line or "┃" in line]
    # Each line is "│ a │ b │": drop the outer borders, split on the inner ones.
    cells = [[c.strip() for c in line.strip()[1:-1].replace("┃", "│").split("│")] for line in lines]
    expected = [(str(i), "" if n is None else str(n)) for i, _s, n, _d in _direct(published)]
    assert cells[0] == ["i", "n"]
    assert [tuple(row) for row in cells[1:]] == expected
    assert "5 rows" in result.stdout


def test_sql_prints_values_with_square_brackets_as_they_are(published: Path) -> None:
    # Rich reads "[...]" as markup: "[bold]b" lost its tag and "[/x]" was a traceback.
    values = ["[VIP] Ahmet", "[/x]", "[bold]b"]
    query = "SELECT " + ", ".join(f"'{v}' AS c{i}" for i, v in enumerate(values))
    result = _sql([query], published)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "Ahmet" in line)
    assert [c.strip() for c in row.strip()[1:-1].split("│")] == values


def test_sql_exports_csv_json_and_parquet_with_the_exact_rows(
    published: Path, tmp_path: Path
) -> None:
    want = _direct(published)
    # CSV on stdout, then to a file: the same text.
    printed = _sql([QUERY, "--format", "csv"], published)
    assert printed.returncode == 0, printed.stderr
    parsed = list(csv.reader(io.StringIO(printed.stdout)))
    assert parsed[0] == ["i", "s", "n", "d"]
    assert parsed[1:] == [
        [str(i), s, "" if n is None else str(n), d.isoformat()] for i, s, n, d in want
    ]
    out = tmp_path / "out.csv"
    written = _sql([QUERY, "--output", str(out)], published)  # format from the extension
    assert written.returncode == 0, written.stderr
    assert out.read_text(encoding="utf-8") == printed.stdout
    assert "wrote 5 rows" in written.stderr

    as_json = _sql([QUERY, "--format", "json"], published)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [
        {"i": i, "s": s, "n": n, "d": d.isoformat()} for i, s, n, d in want
    ]

    parquet = tmp_path / "out.parquet"
    result = _sql([QUERY, "--format", "parquet", "--output", str(parquet)], published)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(parquet)
    assert table.column_names == ["i", "s", "n", "d"]
    columns = [table.column(c).to_pylist() for c in table.column_names]
    assert list(zip(*columns, strict=True)) == want


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # bad SQL: DuckDB's parser error, one line
        (["SELEC 1"], "the query failed: Parser Error"),
        # the copy is read-only: a write is refused
        (["CREATE TABLE x (i INTEGER)"], "read-only"),
        # a format click does not know
        (["SELECT 1", "--format", "xml"], "Invalid value for '--format'"),
        # parquet is binary: only to a file
        (["SELECT 1", "--format", "parquet"], "give --output FILE"),
        # a table is for the terminal
        (["SELECT 1", "--format", "table", "--output", "x.txt"], "use csv, json or parquet"),
        # an output whose extension says nothing
        (["SELECT 1", "--output", "x.txt"], "cannot tell the format"),
    ],
)
def test_sql_errors_are_one_line_with_exit_2(
    published: Path, args: list[str], message: str
) -> None:
    result = _sql(args, published)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_sql_without_an_analysts_file_says_to_sync_first(tmp_path: Path) -> None:
    result = _sql(["SELECT 1"], tmp_path / "none.duckdb")
    assert result.returncode == 2
    assert "run `bulutfon-pipeline sync` first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
