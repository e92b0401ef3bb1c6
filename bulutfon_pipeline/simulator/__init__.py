"""A real HTTP server that behaves like the Bulutfon API, and its deterministic dataset.

>>> with SimulatorServer(SimulatorConfig(days=3, calls_per_day=50, dialect="v1")) as sim:
...     env = sim.env()  # BULUTFON_* variables pointing at the simulator
>>> with SimulatorServer(SimulatorConfig(days=3), accounts=["izmir", "ankara"]) as sim:
...     env = sim.env(account="ankara")  # its own token, calls, rate limit and stats
"""

from bulutfon_pipeline.simulator.accounts import Accounts
from bulutfon_pipeline.simulator.app import SimulatorState, create_app
from bulutfon_pipeline.simulator.dataset import Dataset, generate_dataset
from bulutfon_pipeline.simulator.model import Call, FlowStep, Origination, SimulatorConfig
from bulutfon_pipeline.simulator.server import DIALECT_PATHS, SimulatorServer

__all__ = [
    "DIALECT_PATHS",
    "Accounts",
    "Call",
    "Dataset",
    "FlowStep",
    "Origination",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorState",
    "create_app",
    "generate_dataset",
]
