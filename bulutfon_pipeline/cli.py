"""The ``bulutfon-pipeline`` command: sync, backfill, demo, auth, simulator, ui.

``sync`` and ``backfill`` run the same Dagster assets as the UI and the schedule,
in-process; runs are recorded in ``DAGSTER_HOME`` when it is set. Problems a user can fix
(configuration, credentials, an unreachable API, a bad path) end with one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bulutfon_pipeline import progress
from bulutfon_pipeline.settings import DEFAULT_DATA_DIR, LOCAL_TZ

console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)

EXIT_CONFIG = 2  # a problem the user can fix: configuration, input, credentials
EXIT_BUSY = 3  # another sync holds the warehouse
EXIT_FAILED = 1  # the run failed for another reason (details in the message)

F = TypeVar("F", bound=Callable[..., Any])


class CLIError(click.ClickException):
    """A one-line, user-fixable problem."""

    exit_code = EXIT_CONFIG

    def show(self, file: Any = None) -> None:
        err_console.print(f"[bold red]error:[/] {self.format_message()}", highlight=False)


class BusyError(CLIError):
    exit_code = EXIT_BUSY


class RunFailedError(CLIError):
    """The run itself failed (e.g. the disk filled up); the warehouse keeps its last commit."""

    exit_code = EXIT_FAILED


def _user_error(error: BaseException) -> BaseException | None:
    """The first project error in an exception chain (Dagster wraps asset errors)."""
    from bulutfon_pipeline.api.errors import BulutfonError
    from bulutfon_pipeline.warehouse import WarehouseError

    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BulutfonError | WarehouseError):
            return current
        stack.extend([current.__cause__, current.__context__])
        stack.append(getattr(current, "user_exception", None))
    return None


def friendly_errors(func: F) -> F:
    """Turn project errors into one clean line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted; the warehouse keeps its last committed batch")
            sys.exit(130)
        except Exception as error:
            found = _user_error(error)
            if found is None:
                raise
            if _is_runtime_failure(found):
                raise RunFailedError(str(found)) from None
            raise CLIError(str(found)) from None

    return wrapper  # type: ignore[return-value]


def _is_runtime_failure(error: BaseException) -> bool:
    """A failure of the run itself (e.g. disk full) rather than of the configuration."""
    from bulutfon_pipeline.warehouse import WarehouseError, WarehouseLockedError

    return isinstance(error, WarehouseError) and not isinstance(error, WarehouseLockedError)


# --- progress ---------------------------------------------------------------------------


class RichReporter:
    """Progress bars on a terminal, driven by :mod:`bulutfon_pipeline.progress`."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._tasks: dict[str, TaskID] = {}

    def start(self, task: str, total: int | None) -> None:
        if task in self._tasks:
            self._bar.reset(self._tasks[task], total=total, visible=True)
        else:
            self._tasks[task] = self._bar.add_task(task, total=total)

    def advance(self, task: str, amount: int = 1) -> None:
        if task in self._tasks:
            self._bar.advance(self._tasks[task], amount)

    def finish(self, task: str) -> None:
        if task in self._tasks:
            current = self._bar.tasks[self._tasks[task]]
            self._bar.update(self._tasks[task], total=current.completed)


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    if not enabled or not console.is_terminal:
        yield
        return
    bar = Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar, progress.installed(RichReporter(bar)):
        yield


# --- the sync ---------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """What one sync or backfill did, for the summary table."""

    listing: dict[str, Any] = field(default_factory=dict)
    ranges: list[tuple[dt.date, dt.date]] = field(default_factory=list)
    details: dict[str, int] = field(default_factory=dict)
    api: dict[str, int] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    recordings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _quiet_dagster() -> dict[str, Any]:
    # The CLI shows its own progress and summary; Dagster's console logger would print
    # every event (and tracebacks for failures the CLI already explains in one line).
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    return {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _instance() -> Any:
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None


def _check_database_path(path: Path) -> None:
    if not path.parent.exists():
        raise CLIError(
            f"the folder of BULUTFON_DUCKDB_PATH ({path.parent}) does not exist; "
            "create it or point BULUTFON_DUCKDB_PATH elsewhere"
        )
    if path.is_dir():
        raise CLIError(
            f"BULUTFON_DUCKDB_PATH ({path}) is a folder; point it at a file, "
            f"e.g. {path / 'bulutfon.duckdb'}"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(
            f"the warehouse file {path} is read-only; make it writable or point "
            "BULUTFON_DUCKDB_PATH elsewhere"
        )
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise CLIError(f"cannot create the warehouse in {path.parent}: the folder is read-only")


@contextlib.contextmanager
def sync_lock(db_path: Path) -> Iterator[None]:
    """Hold an exclusive lock next to the warehouse, or fail with one line."""
    lock_path = db_path.with_name(db_path.name + ".sync.lock")
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise BusyError(
            f"another sync (pid {holder}) is loading {db_path}; wait for it to finish"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _preflight() -> tuple[Path, Any]:
    """Validate the configuration before any run starts; return the warehouse path."""
    from bulutfon_pipeline.api.errors import ConfigError
    from bulutfon_pipeline.resources import BulutfonResource, LoadSettings, duckdb_path_from_env

    try:
        settings = LoadSettings.from_env()
        config = BulutfonResource().client_config()
    except ConfigError as error:
        raise CLIError(str(error)) from None
    if config.auth_mode is None:
        raise CLIError(
            "no Bulutfon credentials: set BULUTFON_ACCESS_TOKEN, or BULUTFON_CLIENT_ID, "
            "BULUTFON_CLIENT_SECRET and BULUTFON_REFRESH_TOKEN (see .env.example)"
        )
    db_path = Path(duckdb_path_from_env())
    _check_database_path(db_path)
    return db_path, settings


def _materialize(selection: Sequence[str], *, tags: dict[str, str], run_config: dict[str, Any]):
    import dagster as dg

    from bulutfon_pipeline.definitions import defs

    del defs  # imported for its side effect of validating the wiring
    from bulutfon_pipeline.assets import call_recordings, call_report, cdr_details, cdr_listing
    from bulutfon_pipeline.resources import default_resources

    return dg.materialize(
        [cdr_listing, cdr_details, call_recordings, call_report],
        selection=list(selection),
        resources=default_resources(),
        instance=_instance(),
        tags=tags,
        run_config=run_config,
    )


def _metadata(result: Any, asset: str) -> dict[str, Any]:
    import dagster as dg

    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {
                key: getattr(value, "value", value)
                for key, value in event.materialization.metadata.items()
            }
    return {}


DETAIL_ASSETS = ("cdrs", "raw_cdr_details", "call_flow_steps", "originations")


def run_sync(
    *,
    listing: bool = True,
    start: dt.date | None = None,
    end: dt.date | None = None,
    refetch: bool = False,
    show_progress: bool = True,
) -> RunOutcome:
    """Scan the listing (optional), then load every day with pending calls.

    With ``start``/``end`` (a backfill) the given days are loaded even if nothing is
    pending, so ``refetch`` can reload them.
    """
    import time

    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from bulutfon_pipeline.loads import group_dates
    from bulutfon_pipeline.recordings import downloads_enabled
    from bulutfon_pipeline.warehouse import Warehouse

    started = time.monotonic()
    db_path, settings = _preflight()
    run_config = _quiet_dagster()
    outcome = RunOutcome()
    with sync_lock(db_path), _progress_bars(show_progress):
        if listing:
            result = _materialize(
                ["cdr_listing"], tags={"bulutfon/trigger": "cli"}, run_config=run_config
            )
            outcome.run_ids.append(result.run_id)
            outcome.listing = _metadata(result, "cdr_listing")
        warehouse = Warehouse(db_path)
        warehouse.ensure_schema()
        today = dt.datetime.now(LOCAL_TZ).date()
        if start is not None and end is not None:
            ranges = [(max(start, settings.start_date), min(end, today))]
        else:
            pending = [d for d in warehouse.pending_dates() if settings.start_date <= d <= today]
            ranges = group_dates(pending)
        ranges = [(a, b) for a, b in ranges if a <= b]
        outcome.ranges = ranges
        detail_config = {"ops": {"cdr_details": {"config": {"refetch": refetch}}}}
        for first, last in ranges:
            result = _materialize(
                DETAIL_ASSETS,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                    ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
                    "bulutfon/trigger": "cli",
                },
                run_config={**run_config, **detail_config},
            )
            outcome.run_ids.append(result.run_id)
            meta = _metadata(result, "cdrs")
            for key in (
                "calls_pending",
                "calls_fetched",
                "calls_new",
                "calls_updated",
                "calls_rejected",
            ):
                outcome.details[key] = outcome.details.get(key, 0) + int(meta.get(key, 0))
            for key, value in meta.items():
                if key.startswith("api_"):
                    outcome.api[key[4:]] = outcome.api.get(key[4:], 0) + int(value)
        if downloads_enabled():
            # After the detail runs, so every recorded call of the ranges has its cdrs row.
            recordings_config = {"ops": {"call_recordings": {"config": {"refetch": refetch}}}}
            for first, last in ranges:
                result = _materialize(
                    ["call_recordings"],
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
                        "bulutfon/trigger": "cli",
                    },
                    run_config={**run_config, **recordings_config},
                )
                outcome.run_ids.append(result.run_id)
                meta = _metadata(result, "call_recordings")
                for key in ("downloaded", "skipped", "rejected", "bytes"):
                    outcome.recordings[key] = outcome.recordings.get(key, 0) + int(meta.get(key, 0))
                for key, value in meta.items():
                    if key.startswith("api_"):
                        outcome.api[key[4:]] = outcome.api.get(key[4:], 0) + int(value)
        for key, value in outcome.listing.items():
            if key.startswith("api_"):
                outcome.api[key[4:]] = outcome.api.get(key[4:], 0) + int(value)
    outcome.seconds = time.monotonic() - started
    return outcome


def run_report() -> dict[str, Any]:
    """Materialize ``call_report`` (the asset the UI runs) and return its metadata."""
    result = _materialize(
        ["call_report"], tags={"bulutfon/trigger": "cli"}, run_config=_quiet_dagster()
    )
    return _metadata(result, "call_report")


def print_summary(outcome: RunOutcome, *, title: str = "sync") -> None:
    """A summary table of a sync or backfill."""
    table = Table(title=f"bulutfon-pipeline {title}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    if outcome.listing:
        table.add_row("listing pages read", str(outcome.listing.get("pages", 0)))
        table.add_row("calls in listing scan", str(outcome.listing.get("calls_listed", 0)))
        table.add_row("new calls listed", str(outcome.listing.get("new", 0)))
        table.add_row("calls changed at the source", str(outcome.listing.get("changed", 0)))
    ranges = ", ".join(
        a.isoformat() if a == b else f"{a.isoformat()}..{b.isoformat()}" for a, b in outcome.ranges
    )
    table.add_row("days loaded", ranges or "none (nothing pending)")
    table.add_row("details fetched", str(outcome.details.get("calls_fetched", 0)))
    table.add_row("calls new", str(outcome.details.get("calls_new", 0)))
    table.add_row("calls updated", str(outcome.details.get("calls_updated", 0)))
    rejected = outcome.details.get("calls_rejected", 0) + int(outcome.listing.get("rejected", 0))
    table.add_row("records rejected (see load_rejects)", str(rejected))
    if outcome.recordings:
        rec = outcome.recordings
        table.add_row(
            "recordings downloaded / skipped / rejected",
            f"{rec.get('downloaded', 0)} / {rec.get('skipped', 0)} / {rec.get('rejected', 0)}",
        )
    api = outcome.api
    table.add_row(
        "API requests / retries / 429s / token refreshes",
        f"{api.get('requests', 0)} / {api.get('retries', 0)} / "
        f"{api.get('rate_limited', 0)} / {api.get('refreshes', 0)}",
    )
    table.add_row("duration", f"{outcome.seconds:.1f} s")
    console.print(table)


# --- commands ---------------------------------------------------------------------------


class _LazySimulatorGroup(click.Group):
    """Imports the ``simulator`` command (starlette, uvicorn, the dataset generator: a
    third of ``--help``'s start-up) only when that command runs; the command list shows
    a stub with the same one-line help."""

    _SIMULATOR_HELP = "Serve the Bulutfon API simulator until interrupted."

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "simulator"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "simulator":
            return click.Command("simulator", help=self._SIMULATOR_HELP)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name == "simulator":
            from bulutfon_pipeline.simulator.cli import simulator_command

            command = simulator_command
        return name, command, rest


@click.group(cls=_LazySimulatorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bulutfon_pipeline")
def main() -> None:
    """Load Bulutfon call records (CDRs, call flows, originations) into DuckDB."""


@main.command()
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@friendly_errors
def sync(no_progress: bool) -> None:
    """Scan the listing, then load every day that has calls not loaded yet."""
    outcome = run_sync(show_progress=not no_progress)
    print_summary(outcome)


DATE = click.DateTime(formats=["%Y-%m-%d"])


@main.command()
@click.option("--start", required=True, type=DATE, help="First local day, YYYY-MM-DD.")
@click.option("--end", required=True, type=DATE, help="Last local day (inclusive), YYYY-MM-DD.")
@click.option("--refetch", is_flag=True, help="Fetch calls already loaded again.")
@click.option("--skip-listing", is_flag=True, help="Do not scan the listing first.")
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@friendly_errors
def backfill(
    start: dt.datetime, end: dt.datetime, refetch: bool, skip_listing: bool, no_progress: bool
) -> None:
    """Load the days START..END (scanning the listing first)."""
    if end < start:
        raise CLIError(f"--end {end.date()} is before --start {start.date()}; swap them")
    outcome = run_sync(
        listing=not skip_listing,
        start=start.date(),
        end=end.date(),
        refetch=refetch,
        show_progress=not no_progress,
    )
    print_summary(outcome, title="backfill")


@main.command()
@click.option("--start", required=True, type=DATE, help="First local day, YYYY-MM-DD.")
@click.option("--end", type=DATE, help="Last local day (inclusive, default today), YYYY-MM-DD.")
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@friendly_errors
def reconcile(start: dt.datetime, end: dt.datetime | None, no_progress: bool) -> None:
    """Re-read the listing back to START and load the calls that changed at the source."""
    from bulutfon_pipeline.reconcile import run_reconcile
    from bulutfon_pipeline.recordings import downloads_enabled

    today = dt.datetime.now(LOCAL_TZ).date()
    first, last = start.date(), end.date() if end is not None else today
    if first > today:
        raise CLIError(f"--start {first} is in the future (today is {today})")
    if last < first:
        raise CLIError(f"--end {last} is before --start {first}; swap them")
    db_path, settings = _preflight()
    if first < settings.start_date:
        raise CLIError(
            f"--start {first} is before BULUTFON_START_DATE ({settings.start_date}); "
            "nothing before it is loaded"
        )
    with sync_lock(db_path), _progress_bars(not no_progress):
        outcome = run_reconcile(
            db_path,
            start=first,
            end=min(last, today),
            download_recordings=downloads_enabled(),
            run_config=_quiet_dagster(),
            instance=_instance(),
        )
    table = Table(title=f"bulutfon-pipeline reconcile {first}..{last}", header_style="bold")
    table.add_column("call date", no_wrap=True)
    table.add_column("uuid", no_wrap=True, min_width=36)  # whole, to copy into a query
    for column in ("field", "old value", "new value"):
        table.add_column(column, overflow="fold")
    for change in outcome.changes:
        table.add_row(str(change.call_date), change.uuid, change.field,
                      change.old_value or "", change.new_value or "")  # fmt: skip
    console.print(table)
    console.print(
        f"{outcome.listing_pages} listing pages, {outcome.calls_changed} calls changed, "
        f"{outcome.details_fetched} details fetched, {len(outcome.changes)} changes, "
        f"{outcome.recordings_deleted} recordings deleted",
        highlight=False,
    )


@main.command("purge-recordings")
@click.option(
    "--before", required=True, type=DATE, help="Delete recordings of calls before this local day."
)
@friendly_errors
def purge_recordings_command(before: dt.datetime) -> None:
    """Delete the recording files and call_recordings rows of calls before BEFORE.

    The rows go first, in one transaction, then the files. If the command dies in
    between, the files are left without rows; run it again with the same date and it
    deletes them (it sweeps every file in the day folders before BEFORE).
    """
    from bulutfon_pipeline.recordings import data_dir_from_env, purge_recordings
    from bulutfon_pipeline.resources import duckdb_path_from_env
    from bulutfon_pipeline.warehouse import Warehouse

    db_path = Path(duckdb_path_from_env())
    _check_database_path(db_path)
    data_dir = data_dir_from_env()
    with sync_lock(db_path):
        warehouse = Warehouse(db_path)
        warehouse.ensure_schema()
        summary = purge_recordings(warehouse, data_dir=data_dir, before=before.date())
    console.print(
        f"purged recordings before {summary.before.isoformat()}: {summary.rows} rows, "
        f"{summary.files} files, {summary.stray_files} stray files, "
        f"{len(summary.folders)} day folders under {data_dir / 'recordings'}",
        highlight=False,
    )


@main.command()
@click.option("--code", help="Exchange this OAuth authorization code for tokens.")
@click.option("--refresh", "refresh", is_flag=True, help="Refresh the stored token now.")
@friendly_errors
def auth(code: str | None, refresh: bool) -> None:
    """Obtain or refresh OAuth tokens; they are stored in BULUTFON_DATA_DIR (mode 0600)."""
    from bulutfon_pipeline.api import ClientConfig, exchange_code, force_refresh

    if bool(code) == bool(refresh):
        raise click.UsageError("give exactly one of --code CODE or --refresh")
    config = ClientConfig.from_env()
    token = exchange_code(config, code) if code else force_refresh(config)
    expires = dt.datetime.fromtimestamp(token.expires_at, dt.UTC).astimezone(LOCAL_TZ)
    data_dir = os.environ.get("BULUTFON_DATA_DIR") or DEFAULT_DATA_DIR
    console.print(
        f"Stored a new token pair in {data_dir}/ (mode 0600); "
        f"the access token expires at {expires:%Y-%m-%d %H:%M %Z}."
    )


@main.command()
@click.option("--days", default=30, show_default=True, help="Days of simulated calls.")
@click.option("--calls-per-day", default=300, show_default=True)
@click.option("--database", default="data/demo.duckdb", show_default=True, type=click.Path())
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@friendly_errors
def demo(days: int, calls_per_day: int, database: str, no_progress: bool) -> None:
    """Run the whole pipeline against the embedded simulator into data/demo.duckdb."""
    from bulutfon_pipeline.demo import run_demo

    run_demo(
        days=days,
        calls_per_day=calls_per_day,
        database=Path(database),
        show_progress=not no_progress,
        console=console,
    )


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


DAGSTER_YAML = """\
# Written by `bulutfon-pipeline ui`. DuckDB allows one writer process: the pool serializes
# the steps that write, and the run queue keeps backfills from flooding the machine.
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 3
telemetry:
  enabled: false
"""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Webserver bind address.")
@click.option("--port", default=3000, show_default=True, help="Webserver port.")
@click.option("--simulator-port", default=8765, show_default=True)
@click.option("--database", default="data/ui.duckdb", show_default=True, type=click.Path())
def ui(host: str, port: int, simulator_port: int, database: str) -> None:
    """Start the simulator and `dagster dev` pointed at it (http://127.0.0.1:3000)."""
    import secrets

    data = Path(os.environ.get("BULUTFON_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
    home = Path(os.environ.get("DAGSTER_HOME") or data / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BULUTFON_SIMULATOR_MASTER_TOKEN": token,
        "BULUTFON_ACCESS_TOKEN": token,
        "BULUTFON_API_URL": f"http://127.0.0.1:{simulator_port}",
        "BULUTFON_TOKEN_URL": f"http://127.0.0.1:{simulator_port}/oauth/token",
        "BULUTFON_DUCKDB_PATH": str(Path(database).resolve()),
        "BULUTFON_DATA_DIR": str(data),
    }
    python = sys.executable
    sim = subprocess.Popen(
        [python, "-m", "bulutfon_pipeline.simulator", "--port", str(simulator_port)], env=env
    )
    dagster_bin = shutil.which("dagster", path=str(Path(python).parent)) or "dagster"
    console.print(
        f"Simulator on http://127.0.0.1:{simulator_port}; Dagster UI on http://{host}:{port} "
        f"(DAGSTER_HOME={home}). Ctrl-C stops both."
    )
    try:
        subprocess.run(
            [dagster_bin, "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)],
            env=env,
            check=False,
            # A shell starts background jobs with SIGINT ignored, and `dagster dev` keeps
            # that disposition for SIGTERM too; restore the defaults so it can be stopped.
            preexec_fn=_default_signals,
        )
    except KeyboardInterrupt:
        pass
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()


def run(argv: Sequence[str] | None = None) -> None:
    """The console entry point: every usage or user error is one line on stderr."""
    try:
        main.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        if isinstance(error, CLIError):
            error.show()
        else:
            hint = " (see --help)" if isinstance(error, click.UsageError) else ""
            message = f"[bold red]error:[/] {error.format_message()}{hint}"
            err_console.print(message, highlight=False)
        sys.exit(error.exit_code)


if __name__ == "__main__":  # pragma: no cover
    run()
