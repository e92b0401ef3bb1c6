"""The runner's in-process Dagster runs: quiet logging, the instance (with the accounts
registered as partitions), one run, and its metadata back."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

from bulutfon_pipeline.runner.interrupts import raise_if_stopped
from bulutfon_pipeline.settings import Settings


def quiet_dagster() -> dict[str, Any]:
    # The CLI shows its own progress and summary; Dagster's console logger would print
    # every event (and tracebacks for failures the CLI already explains in one line).
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    return {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def instance_for(accounts: Sequence[str]) -> Any:
    """The Dagster instance of the runner's runs (``DAGSTER_HOME``'s, else an ephemeral
    one), with ``accounts`` registered as partitions."""
    import dagster as dg

    from bulutfon_pipeline.partitions import register_accounts

    if os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    else:
        instance = dg.DagsterInstance.ephemeral()
    register_accounts(instance, accounts)
    return instance


def materialize(
    selection: Sequence[str],
    *,
    settings: Settings,
    tags: dict[str, str],
    run_config: dict[str, Any],
    instance: Any = None,
    partition_key: str | None = None,
) -> Any:
    import dagster as dg

    from bulutfon_pipeline.assets import ASSETS
    from bulutfon_pipeline.assets._common import PUBLISH_DEFERRED, PUBLISH_TAG
    from bulutfon_pipeline.resources import default_resources

    if instance is None and os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    result = dg.materialize(
        list(ASSETS),
        selection=list(selection),
        resources=default_resources(settings),
        instance=instance,
        partition_key=partition_key,
        # The runner publishes the analysts' copy once, at the end, not after each run.
        tags={**tags, "bulutfon/trigger": "cli", PUBLISH_TAG: PUBLISH_DEFERRED},
        run_config=run_config,
    )
    raise_if_stopped()  # a signal between steps ends no Dagster run; stop here instead
    return result


def metadata(result: Any, asset: str) -> dict[str, Any]:
    import dagster as dg

    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {
                key: getattr(value, "value", value)
                for key, value in event.materialization.metadata.items()
            }
    return {}
