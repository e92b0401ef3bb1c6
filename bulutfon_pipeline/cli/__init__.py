"""The ``bulutfon-pipeline`` command: parses arguments and renders the runner's results.

* ``main.py`` - the commands;
* ``errors.py`` - exit codes and one-line errors;
* ``output.py`` - consoles, progress bars, tables;
* ``demo.py``, ``ui.py`` - the two commands that start the simulator.

Python's cyclic garbage collector scans the young objects every 700 allocations, and every
object it keeps now and then. Importing Dagster, pandas and SQLAlchemy allocates over a
million objects that live as long as the process, so the collector ran hundreds of times
for nothing. The command imports with it off, moves what the imports made out of its
reach (``gc.freeze``), and lets the young generation grow larger before a scan. A ``sync``
with nothing to load went from 6.3 to 4.8 CPU seconds (median of six, alternating).
"""

import gc

from bulutfon_pipeline import settle_imports

gc.disable()
try:
    from bulutfon_pipeline.cli.main import main, run
finally:
    settle_imports()

__all__ = ["main", "run"]
