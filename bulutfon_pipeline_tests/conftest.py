"""Shared fixtures: the Bulutfon API simulator on a real socket, a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bulutfon_pipeline import settle_imports
from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer
from bulutfon_pipeline_tests.helpers import BACKENDS, WarehouseTarget, WarehouseTargetFactory
from bulutfon_pipeline_tests.postgres import PostgresServer

# What the CLI does (bulutfon_pipeline/cli/__init__.py) once it has imported.
settle_imports()

SimulatorFactory = Callable[..., SimulatorServer]


@pytest.fixture
def simulator_factory() -> Iterator[SimulatorFactory]:
    """``make(**config_kwargs)`` -> a started :class:`SimulatorServer`; all are stopped at
    teardown. ``host``/``port``/``accounts`` (a count or names) keyword arguments go to the
    server, the rest to the config."""
    servers: list[SimulatorServer] = []

    def make(**kwargs: Any) -> SimulatorServer:
        host = kwargs.pop("host", "127.0.0.1")
        port = kwargs.pop("port", 0)
        accounts = kwargs.pop("accounts", 1)
        config = SimulatorConfig(**kwargs)
        server = SimulatorServer(config, host=host, port=port, accounts=accounts).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def simulator(simulator_factory: SimulatorFactory) -> SimulatorServer:
    """A small default simulator: seed dialect, 3 days of 40 calls."""
    return simulator_factory(days=3, calls_per_day=40)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL cluster per test process (each xdist worker has its own)."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL (psycopg 3) of a fresh, empty database, dropped after the test."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def warehouse_target(request: pytest.FixtureRequest) -> Iterator[WarehouseTargetFactory]:
    """``make(backend, folder)`` -> a :class:`WarehouseTarget`: ``folder/warehouse.duckdb``,
    or (``backend="postgres"``) a fresh database on the session's server, dropped at
    teardown. The server starts only when a test asks for PostgreSQL."""
    databases: list[tuple[PostgresServer, str]] = []

    def make(backend: str, folder: Path) -> WarehouseTarget:
        assert backend in BACKENDS, backend
        path = folder / "warehouse.duckdb"
        if backend == "duckdb":
            return WarehouseTarget(
                path, {"BULUTFON_DUCKDB_PATH": str(path), "BULUTFON_WAREHOUSE_URL": ""}
            )
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = server.create_database()
        databases.append((server, name))
        url = server.url(name)
        return WarehouseTarget(
            url, {"BULUTFON_DUCKDB_PATH": str(path), "BULUTFON_WAREHOUSE_URL": url}
        )

    yield make
    for server, name in databases:
        server.drop_database(name)


@pytest.fixture
def backend() -> str:
    """The warehouse of ``target``: ``duckdb``, unless the test is parametrized with
    ``pytest.mark.parametrize("backend", BACKENDS)``, which overrides this fixture."""
    return "duckdb"


@pytest.fixture
def target(
    backend: str, warehouse_target: WarehouseTargetFactory, tmp_path: Path
) -> WarehouseTarget:
    """The test's warehouse on ``backend``: ``tmp_path/warehouse.duckdb``, or a fresh
    database on the session's PostgreSQL server."""
    return warehouse_target(backend, tmp_path)
