"""The ``bulutfon-pipeline`` command: parses arguments and renders the runner's results.

* ``main.py`` - the commands;
* ``errors.py`` - exit codes and one-line errors;
* ``output.py`` - consoles, progress bars, tables;
* ``demo.py``, ``ui.py`` - the two commands that start the simulator.
"""

from bulutfon_pipeline.cli.main import main, run

__all__ = ["main", "run"]
