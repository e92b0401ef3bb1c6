"""The runner's in-process Dagster runs: quiet logging, the instance (with the accounts
registered as partitions), one run, and its metadata back."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from bulutfon_pipeline.runner.instance import CommandInstance
from bulutfon_pipeline.runner.interrupts import raise_if_stopped
from bulutfon_pipeline.settings import Settings


def quiet_dagster() -> dict[str, Any]:
    # The CLI shows its own progress and summary; Dagster's console logger would print
    # every event (and tracebacks for failures the CLI already explains in one line).
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    return {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


#: The ``python_logs`` handlers of ``DAGSTER_HOME``'s dagster.yaml, read once by
#: :func:`prepare_threads` before accounts run in threads (see there).
_yaml_handlers: list[logging.Handler] | None = None


def prepare_threads() -> None:
    """Call in the main thread before several accounts' runs start in threads of one
    process; from then on :func:`account_instance` gives each thread an instance fit for it.
    Two things of a ``DAGSTER_HOME`` instance assume one run per process at a time:

    * its compute log manager captures a step's output by pointing the process's file
      descriptors 1 and 2 at the step's log file and back: two accounts' steps at once
      left the CLI's own output in some step's log (the summary and the failed account's
      line never showed). The threads' instances capture nothing (the CLI quiets Dagster's
      logs anyway); runs and events are still stored in ``DAGSTER_HOME``;
    * it builds its ``python_logs`` handlers with ``logging.config.dictConfig`` for every
      run. ``dictConfig`` holds logging's module lock while it takes each existing
      handler's lock to close it, and a thread logging through such a handler holds that
      lock while it waits for the module lock: the whole sync deadlocked. So the handlers
      are built here, once, and every thread's instance reuses them.
    """
    global _yaml_handlers
    if _yaml_handlers is None and os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            _yaml_handlers = list(instance.get_yaml_python_handlers())


def _for_threads(instance: Any) -> Any:
    """``instance`` again, without compute log capture and with the handlers read once
    (:func:`prepare_threads` says why)."""
    import dagster as dg
    from dagster._serdes import ConfigurableClassData

    ref = instance.get_ref()._replace(
        compute_logs_data=ConfigurableClassData(
            "dagster._core.storage.noop_compute_log_manager", "NoOpComputeLogManager", "{}"
        )
    )
    threaded = dg.DagsterInstance.from_ref(ref)
    handlers = list(_yaml_handlers or ())
    threaded.get_yaml_python_handlers = lambda: handlers  # type: ignore[method-assign]
    return threaded


@contextlib.contextmanager
def account_instance(accounts: Sequence[str], instances: CommandInstance) -> Iterator[Any]:
    """The Dagster instance of one account's runs (``DAGSTER_HOME``'s, else the command's
    ephemeral one of ``instances``), with ``accounts`` registered as partitions. On exit
    the former is disposed of; the latter forgets the accounts' runs (their results were
    read)."""
    import dagster as dg

    from bulutfon_pipeline.partitions import register_accounts

    home = bool(os.environ.get("DAGSTER_HOME"))
    if home:
        instance = dg.DagsterInstance.get()
        if _yaml_handlers is not None:
            instance = _for_threads(instance)
    else:
        instance = instances.get()
    try:
        with _REGISTERING:  # the accounts' threads may share the instance
            register_accounts(instance, accounts)
            _remember_accounts(instance, accounts)
        yield instance
    finally:
        if home:
            instance.dispose()
        else:
            instances.forget(instance, accounts)


#: Held while an account is registered with its instance (:func:`account_instance`).
_REGISTERING = threading.Lock()


def _remember_accounts(instance: Any, accounts: Sequence[str]) -> None:
    """Let ``instance`` answer "is this account a partition?" for ``accounts`` without
    asking its storage.

    Dagster checks a run's partition keys against the instance many times per run (each
    range it resolves asks for both ends, each ``add_asset_metadata`` of a partition
    resolves the run's range again), and each check is a query of the event log storage
    (a new SQLite connection each, for the ephemeral instance): 5-8 % of a 50-account
    sync's profile (``benchmarks/ANALYSIS.md``). The runner has just registered these
    accounts, and the sensor never removes one, so a yes for them stays true for the
    run; every other question still goes to the storage.
    """
    from bulutfon_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME

    known: set[str] | None = getattr(instance, "_bulutfon_known_accounts", None)
    if known is not None:  # an instance that other accounts use or used
        known.update(accounts)
        return
    known = instance._bulutfon_known_accounts = set(accounts)
    asks = instance.has_dynamic_partition

    def has_dynamic_partition(partitions_def_name: str, partition_key: str) -> bool:
        if partitions_def_name == ACCOUNTS_PARTITIONS_NAME and partition_key in known:
            return True
        return bool(asks(partitions_def_name=partitions_def_name, partition_key=partition_key))

    instance.has_dynamic_partition = has_dynamic_partition


def materialize(
    selection: Sequence[str],
    *,
    settings: Settings,
    tags: dict[str, str],
    run_config: dict[str, Any],
    instance: Any = None,
    partition_key: str | None = None,
) -> Any:
    """One in-process run of the assets ``selection``, as ``dagster.materialize`` would
    run it, of a job built once per selection and settings (:func:`_asset_job`)."""
    import dagster as dg

    from bulutfon_pipeline.assets._common import PUBLISH_DEFERRED, PUBLISH_TAG

    if instance is None and os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    with _JOBS_LOCK:
        job = _asset_job(tuple(selection), settings)
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=partition_key,
        # The runner publishes the analysts' copy once, at the end, not after each run.
        tags={**tags, "bulutfon/trigger": "cli", PUBLISH_TAG: PUBLISH_DEFERRED},
    )
    raise_if_stopped()  # a signal between steps ends no Dagster run; stop here instead
    return result


#: The name ``dagster.materialize`` gives its job, so the runs look the same in the UI.
_JOB_NAME = "__ephemeral_asset_job__"
_JOBS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _asset_job(selection: tuple[str, ...], settings: Settings) -> Any:
    """The job that materializes ``selection`` with the resources of ``settings`` (built
    once: ``resources.built_resources``), built as ``dagster.materialize`` builds it for
    every run. Built once and reused: a new job is validated again, and computes its
    snapshot (the whole job serialised and hashed) again on its first run; a sync of 50
    accounts makes 100 runs (``benchmarks/ANALYSIS.md``, sessions 32 and 33: about 1.4
    CPU s and 10 MB less for that sync)."""
    import dagster as dg

    from bulutfon_pipeline.assets import ASSETS
    from bulutfon_pipeline.resources import built_resources

    defs = dg.Definitions(
        jobs=[dg.define_asset_job(name=_JOB_NAME, selection=list(selection))],
        assets=list(ASSETS),
        resources=built_resources(settings),
    )
    defs.resolve_all_job_defs()  # validates the asset graph and the resources, as there
    return defs.resolve_job_def(_JOB_NAME)


def metadata(result: Any, asset: str) -> dict[str, Any]:
    import dagster as dg

    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {
                key: getattr(value, "value", value)
                for key, value in event.materialization.metadata.items()
            }
    return {}
