"""Which calls of a dataset are faulty, and how a correct load treats each fault.

A fault is ``missing`` (the detail endpoint answers 404), ``malformed:<kind>`` (a broken
detail body, see :data:`MALFORMED_KINDS`) or ``unknown_field`` (extra fields a loader must
ignore). :mod:`.render` and the app serve them; :mod:`.ground_truth` expects their rejects.
Imports only :mod:`.model`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from bulutfon_pipeline.simulator.model import Call

__all__ = ["MALFORMED_KINDS", "NON_JSON_KINDS", "pick_faults", "reject_stage"]

#: Kinds of broken detail bodies, assigned in this order, cycling.
MALFORMED_KINDS: tuple[str, ...] = (
    "impossible_date",
    "flow_not_list",
    "origination_missing_fields",
    "html_200",
    "empty_200",
)
#: Malformed kinds whose body is never JSON: the loader rejects them at stage ``detail``.
NON_JSON_KINDS = frozenset({"html_200", "empty_200"})


def pick_faults(
    calls: Sequence[Call], seed: int, missing: int, malformed: int, unknown_field: int
) -> dict[str, str]:
    """Pick which of ``calls`` (in listing order) 404, which have a broken detail body and
    which carry unknown fields: uuid -> fault. Deterministic from ``seed`` and the calls;
    malformed kinds cycle through MALFORMED_KINDS, and ``origination_missing_fields`` only
    goes to a call whose flow rings a group."""
    by_uuid = {c.uuid: c for c in calls}
    rng = random.Random(f"{seed}-faults")
    pool = [c.uuid for c in calls]
    rng.shuffle(pool)
    faults: dict[str, str] = {}
    for i in range(malformed):
        kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
        for j, candidate in enumerate(pool):
            if kind != "origination_missing_fields" or any(
                s.originations for s in by_uuid[candidate].flow
            ):
                faults[pool.pop(j)] = f"malformed:{kind}"
                break
    for _ in range(min(missing, len(pool))):
        faults[pool.pop()] = "missing"
    for _ in range(min(unknown_field, len(pool))):
        faults[pool.pop()] = "unknown_field"
    return faults


def reject_stage(fault: str | None) -> str | None:
    """The ``load_rejects.stage`` a correct load records for a call with ``fault``, or None
    when the call loads: 404s and non-JSON bodies fail at ``detail``, the rest of the broken
    bodies at ``normalize``."""
    if fault == "missing":
        return "detail"
    if fault is not None and fault.startswith("malformed:"):
        return "detail" if fault.split(":", 1)[1] in NON_JSON_KINDS else "normalize"
    return None
