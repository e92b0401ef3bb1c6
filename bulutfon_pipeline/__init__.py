"""bulutfon_pipeline: Bulutfon's call records into a warehouse, as a Dagster project."""

import gc
import os

#: Arrow's allocator (``ARROW_DEFAULT_MEMORY_POOL``) in every process that imports the
#: pipeline, unless the variable is set: the C library's malloc. Arrow's default,
#: mimalloc, keeps a heap for each thread and backs its memory with transparent huge
#: pages, so each 2 MB region it touches is resident whole; and Arrow's C++ code
#: allocates from its default whatever ``pyarrow.set_memory_pool`` says (DuckDB's scan
#: of an Arrow table: 9 small blocks each). A sync of 50 accounts held 16 MB of huge pages
#: in mimalloc for at most 28 KB of data, and peaked 20-30 MB higher for it
#: (``benchmarks/ANALYSIS.md``, session 39). Arrow reads the variable when it first picks
#: its default, so the pipeline sets it on import, before pyarrow's (the CLI, Dagster's
#: code server and run workers, Celery workers all import it first); where pyarrow came
#: first, accounts loading in threads still switch pyarrow's own calls
#: (``account_threads``).
ARROW_MEMORY_POOL = "system"
#: Whether the user chose Arrow's allocator (``ARROW_DEFAULT_MEMORY_POOL`` was set).
ARROW_POOL_FROM_USER = bool(os.environ.get("ARROW_DEFAULT_MEMORY_POOL"))
if not ARROW_POOL_FROM_USER:
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = ARROW_MEMORY_POOL

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
