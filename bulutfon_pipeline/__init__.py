"""bulutfon_pipeline: Bulutfon's call records into a warehouse, as a Dagster project."""

import gc

#: The garbage collector's thresholds once a process has imported what it needs: the
#: young generation grows to 20,000 objects before a scan, not 700.
GC_THRESHOLDS = (20_000, 20, 20)


def settle_imports() -> None:
    """Take what the process imported out of the cyclic collector's scans (``gc.freeze``)
    and scan young objects less often: importing Dagster, pandas and SQLAlchemy makes
    over a million objects that live as long as the process. Turns the collector on."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()
