"""Fixtures for warehouse tests: a fresh warehouse per test, on each backend.

``warehouse`` runs a test twice: on a DuckDB file and on a fresh PostgreSQL database (a
real server, ``postgres_url``). ``duckdb_warehouse`` is for what only a file has (its
lock, read-only connections, the DuckDB catalog).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline.warehouse.postgres_backend import Postgres

BACKENDS = ("duckdb", "postgres")


def make_warehouse(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Warehouse:
    """An empty warehouse with its schema on ``backend``."""
    if backend == "duckdb":
        wh = Warehouse(tmp_path / "bulutfon.duckdb", lock_timeout_s=10.0)
    else:
        url = request.getfixturevalue("postgres_url")
        wh = Warehouse.on(Postgres(url, schema="warehouse", lock_timeout_s=10.0))
    wh.ensure_schema()
    return wh


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return make_warehouse(request, request.param, tmp_path)


@pytest.fixture
def duckdb_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return make_warehouse(request, "duckdb", tmp_path)


@pytest.fixture
def postgres_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return make_warehouse(request, "postgres", tmp_path)
