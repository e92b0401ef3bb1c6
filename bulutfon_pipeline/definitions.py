"""The Dagster code location: wiring only."""

import dagster as dg

from bulutfon_pipeline.assets import ASSETS
from bulutfon_pipeline.resources import default_resources
from bulutfon_pipeline.schedules import (
    bulutfon_reconcile_schedule,
    bulutfon_refresh_schedule,
    refresh_job,
)

defs = dg.Definitions(
    assets=list(ASSETS),
    jobs=[refresh_job],
    schedules=[bulutfon_refresh_schedule, bulutfon_reconcile_schedule],
    resources=default_resources(),
)
