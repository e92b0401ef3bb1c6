"""Runs that overlap on the same days of a PostgreSQL warehouse (the weekly reconcile and
the refresh; no pool serializes runs there): their detail batches take turns, so none
fails on a duplicate key or a deadlock, and the tables stay exact."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from bulutfon_pipeline.api import BulutfonClient, ClientConfig
from bulutfon_pipeline.loads import load_details, scan_listing
from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.warehouse import Warehouse
from bulutfon_pipeline_tests.conftest import SimulatorFactory
from bulutfon_pipeline_tests.helpers import assert_tables_match, read_table


@pytest.mark.slow
def test_three_detail_loads_of_the_same_days_at_once_are_exact(
    simulator_factory: SimulatorFactory, postgres_url: str
) -> None:
    sim = simulator_factory(days=3, calls_per_day=40, latency_ms=5, jitter_ms=5, seed=11)
    env = {**sim.env(auth="master"), "BULUTFON_WAREHOUSE_URL": postgres_url}
    settings = Settings.from_env(env)
    warehouse = Warehouse.from_settings(settings)
    warehouse.ensure_schema()
    first, last = sim.config.end_date - dt.timedelta(days=2), sim.config.end_date
    with BulutfonClient(ClientConfig.from_env(env)) as client:
        scan_listing(client, warehouse, lookback=dt.timedelta(hours=6), start_date=first)

    for refetch in (False, True):
        outcomes: dict[str, str] = {}

        def load(name: str, refetch: bool = refetch, into: dict[str, str] = outcomes) -> None:
            try:
                with BulutfonClient(ClientConfig.from_env(env)) as client:
                    load_details(
                        client,
                        Warehouse.from_settings(settings),
                        start=first,
                        end=last,
                        refetch=refetch,
                        batch_size=5,  # many small write transactions, interleaved
                    )
                into[name] = "ok"
            except Exception as error:
                into[name] = f"{type(error).__name__}: {error}"

        threads = [threading.Thread(target=load, args=(name,)) for name in "ABC"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes == {"A": "ok", "B": "ok", "C": "ok"}, (refetch, outcomes)
    assert_tables_match(postgres_url, sim.expected_tables())
    raw = [row["uuid"] for row in read_table(postgres_url, "raw_cdr_details")]
    assert len(raw) == len(set(raw)) == 120
