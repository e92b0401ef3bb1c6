"""Shared fixtures: the Bulutfon API simulator on a real socket, a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer
from bulutfon_pipeline_tests.postgres import PostgresServer

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
