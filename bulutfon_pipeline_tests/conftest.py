"""Shared fixtures: the Bulutfon API simulator on a real socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer

SimulatorFactory = Callable[..., SimulatorServer]


@pytest.fixture
def simulator_factory() -> Iterator[SimulatorFactory]:
    """``make(**config_kwargs)`` -> a started :class:`SimulatorServer`; all are stopped at
    teardown. ``host``/``port`` keyword arguments go to the server, the rest to the config."""
    servers: list[SimulatorServer] = []

    def make(**kwargs: Any) -> SimulatorServer:
        host = kwargs.pop("host", "127.0.0.1")
        port = kwargs.pop("port", 0)
        server = SimulatorServer(SimulatorConfig(**kwargs), host=host, port=port).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def simulator(simulator_factory: SimulatorFactory) -> SimulatorServer:
    """A small default simulator: seed dialect, 3 days of 40 calls."""
    return simulator_factory(days=3, calls_per_day=40)
