"""Running the pipeline: sync, backfill, report, purge, replay and demo, with typed results.

The CLI parses arguments and renders what this module returns; the tests call it directly.
It imports neither click nor rich. ``sync`` and ``backfill`` run the same Dagster assets as
the UI and the schedule, in-process (runs are recorded in ``DAGSTER_HOME`` when it is set),
and read their counts back from the materializations through the summaries' own
``from_metadata``.

Modules: ``preflight`` (settings, credentials, path, the sync lock), ``sync`` (sync,
backfill, reconcile, report), ``maintenance`` (purge, replay), ``runs`` (its in-process
Dagster runs), ``accounts`` (the accounts of a command, each in its own thread, their
status), ``interrupts`` (SIGINT/SIGTERM during a sync or backfill: a clean stop with one
line), ``demo``, ``errors``. Errors (the CLI maps each to an exit code):

* :class:`SetupError` - something the user can fix: settings, credentials, a bad path;
* :class:`BusyError` - another sync holds the warehouse;
* :class:`RunFailedError` - the run itself failed (e.g. the disk filled up);
* the project's own errors (``BulutfonError``, ``WarehouseError``) raised inside a Dagster
  run are unwrapped by :func:`user_error`.
"""

from bulutfon_pipeline.runner.accounts import AccountStatus, run_accounts_status
from bulutfon_pipeline.runner.demo import DemoResult, run_demo
from bulutfon_pipeline.runner.errors import (
    BusyError,
    RunFailedError,
    RunnerError,
    SetupError,
    is_runtime_failure,
    user_error,
)
from bulutfon_pipeline.runner.interrupts import StoppedError, stop_cleanly
from bulutfon_pipeline.runner.maintenance import run_purge, run_replay
from bulutfon_pipeline.runner.preflight import (
    check_warehouse,
    check_warehouse_path,
    preflight,
    read_settings,
    sync_lock,
    temporary_environment,
    writer_lock,
)
from bulutfon_pipeline.runner.report import build_call_report
from bulutfon_pipeline.runner.sync import (
    DETAIL_ASSETS,
    ReconcileResult,
    SyncResult,
    run_reconcile,
    run_report,
    run_sync,
)

__all__ = [
    "DETAIL_ASSETS",
    "AccountStatus",
    "BusyError",
    "DemoResult",
    "ReconcileResult",
    "RunFailedError",
    "RunnerError",
    "SetupError",
    "StoppedError",
    "SyncResult",
    "build_call_report",
    "check_warehouse",
    "check_warehouse_path",
    "is_runtime_failure",
    "preflight",
    "read_settings",
    "run_accounts_status",
    "run_demo",
    "run_purge",
    "run_reconcile",
    "run_replay",
    "run_report",
    "run_sync",
    "stop_cleanly",
    "sync_lock",
    "temporary_environment",
    "user_error",
    "writer_lock",
]
