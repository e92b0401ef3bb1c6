"""NDJSON files of call details from the simulator's own generator (no network involved).

One line per call: the ``cdr`` object of a detail response, seed dialect, exactly as the
simulator renders it (``generate_dataset`` + ``render.detail_object``). Files are cached
under ``data/bench/`` by size and reused by later runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from common import WORK

from bulutfon_pipeline.simulator import SimulatorConfig, generate_dataset
from bulutfon_pipeline.simulator.render import detail_object

CALLS_PER_DAY = 1000


def details_file(calls: int) -> Path:
    """The NDJSON file of ``calls`` call details (generated once)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"details_{calls}.ndjson"
    done = path.with_suffix(".ok")
    if path.exists() and done.exists():
        return path
    config = SimulatorConfig(
        days=calls // CALLS_PER_DAY, calls_per_day=CALLS_PER_DAY, dialect="seed"
    )
    dataset = generate_dataset(config)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for call in dataset.calls:
            fh.write(
                json.dumps(detail_object(call, "seed"), ensure_ascii=False, separators=(",", ":"))
            )
            fh.write("\n")
    tmp.replace(path)
    done.touch()
    return path
