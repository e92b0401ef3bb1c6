"""The Dagster code location: wiring only."""

import dagster as dg

from bulutfon_pipeline.assets import call_recordings, call_report, cdr_details, cdr_listing
from bulutfon_pipeline.resources import default_resources
from bulutfon_pipeline.schedules import (
    bulutfon_reconcile_schedule,
    bulutfon_refresh_schedule,
    refresh_job,
)

defs = dg.Definitions(
    assets=[cdr_listing, cdr_details, call_recordings, call_report],
    jobs=[refresh_job],
    schedules=[bulutfon_refresh_schedule, bulutfon_reconcile_schedule],
    resources=default_resources(),
)
