"""``python -m bulutfon_pipeline.cli``: the same as the ``bulutfon-pipeline`` command."""

from bulutfon_pipeline.cli.main import run

run()
