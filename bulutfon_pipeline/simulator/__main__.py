"""``python -m bulutfon_pipeline.simulator``: same as ``bulutfon-pipeline simulator``."""

from bulutfon_pipeline.simulator.cli import main

if __name__ == "__main__":
    main()
