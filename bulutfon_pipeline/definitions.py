"""The Dagster code location: wiring only."""

import dagster as dg

from bulutfon_pipeline.assets import ASSETS
from bulutfon_pipeline.executors import executor_from_env
from bulutfon_pipeline.partitions import bulutfon_accounts_sensor
from bulutfon_pipeline.resources import default_resources
from bulutfon_pipeline.schedules import (
    bulutfon_listing_schedule,
    bulutfon_loads_after_listing_sensor,
    bulutfon_reconcile_schedule,
    bulutfon_refresh_schedule,
    listing_job,
    refresh_job,
)
from bulutfon_pipeline.webhook.sensor import bulutfon_webhook_sensor, webhook_load_job

defs = dg.Definitions(
    assets=list(ASSETS),
    jobs=[listing_job, refresh_job, webhook_load_job],
    schedules=[bulutfon_listing_schedule, bulutfon_refresh_schedule, bulutfon_reconcile_schedule],
    sensors=[
        bulutfon_accounts_sensor,
        bulutfon_webhook_sensor,
        bulutfon_loads_after_listing_sensor,
    ],
    resources=default_resources(),
    # BULUTFON_EXECUTOR: Dagster's default (None), or celery (deploy/celery.yaml). A bad
    # value stops the code location from loading, with its one-line reason.
    executor=executor_from_env(),
)
