"""Fixtures for warehouse tests: a fresh DuckDB file per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulutfon_pipeline.warehouse import Warehouse


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    wh = Warehouse(tmp_path / "bulutfon.duckdb", lock_timeout_s=10.0)
    wh.ensure_schema()
    return wh
