"""The ``bulutfon-pipeline`` commands: sync, backfill, reconcile, sql, purge-recordings,
replay, accounts, report, auth, demo, ui, simulator, webhook.

Each command parses its arguments, calls :mod:`bulutfon_pipeline.runner` and renders the
result. Problems a user can fix (configuration, credentials, an unreachable API, a bad
path) end with one line on stderr and a non-zero exit, never a traceback
(:mod:`bulutfon_pipeline.cli.errors`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from bulutfon_pipeline import runner
from bulutfon_pipeline.cli.errors import EXIT_FAILED, CLIError, friendly_errors
from bulutfon_pipeline.cli.options import DATE, account_option, json_option, no_progress_option
from bulutfon_pipeline.cli.output import (
    console,
    err_console,
    error_line,
    print_accounts,
    print_accounts_json,
    print_reconcile,
    print_summary,
    progress_bars,
)
from bulutfon_pipeline.settings import LOCAL_TZ


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
    """Load Bulutfon call records (CDRs, call flows, originations) into DuckDB, or into
    PostgreSQL when BULUTFON_WAREHOUSE_URL is set."""


@main.command()
@no_progress_option
@json_option
@account_option
@friendly_errors
def sync(no_progress: bool, as_json: bool, accounts: tuple[str, ...]) -> None:
    """Scan the listing, then load every day that has calls not loaded yet (of every
    account, concurrently)."""
    with _stop_cleanly("sync"), progress_bars(not (no_progress or as_json)) as reporter:
        result = runner.run_sync(
            reporter=reporter, on_wait=_say_waiting, accounts=list(accounts) or None
        )
    print_summary(result, title="sync", as_json=as_json)
    _exit_if_accounts_failed(result)


def _exit_if_accounts_failed(result: runner.SyncResult) -> None:
    """One line per account that failed, and exit 1 (the others loaded)."""
    if not result.failures:
        return
    for line in result.failures.values():
        err_console.print(error_line(line), highlight=False)
    loaded = ", ".join(result.by_account) or "none"
    err_console.print(
        f"{len(result.failures)} of {len(result.failures) + len(result.by_account)} accounts "
        f"failed; loaded: {loaded}",
        highlight=False,
    )
    sys.exit(EXIT_FAILED)


def _say_waiting(line: str) -> None:
    """The one line a sync prints while another sync holds the lock."""
    err_console.print(line, highlight=False)


@contextlib.contextmanager
def _stop_cleanly(command: str) -> Iterator[None]:
    """SIGINT/SIGTERM during the block: one line on stderr and exit 130/143."""
    settings = runner.read_settings()
    try:
        with runner.stop_cleanly(settings, command=command):
            yield
    except runner.StoppedError as stopped:
        print(stopped.message, file=sys.stderr)
        sys.exit(stopped.exit_code)


@main.command()
@click.option(
    "--account",
    metavar="NAME",
    default=None,
    help="Only this account's calls (of BULUTFON_ACCOUNTS_FILE); default every account's.",
)
@friendly_errors
def report(account: str | None) -> None:
    """Write the HTML call report (every account's, or one account's) and print its path."""
    print(runner.build_call_report(account))


@main.command()
@click.option("--start", required=True, type=DATE, help="First local day, YYYY-MM-DD.")
@click.option("--end", required=True, type=DATE, help="Last local day (inclusive), YYYY-MM-DD.")
@click.option("--refetch", is_flag=True, help="Fetch calls already loaded again.")
@click.option("--skip-listing", is_flag=True, help="Do not scan the listing first.")
@no_progress_option
@json_option
@account_option
@friendly_errors
def backfill(
    start: dt.datetime,
    end: dt.datetime,
    refetch: bool,
    skip_listing: bool,
    no_progress: bool,
    as_json: bool,
    accounts: tuple[str, ...],
) -> None:
    """Load the days START..END (scanning the listing first)."""
    if end < start:
        raise CLIError(f"--end {end.date()} is before --start {start.date()}; swap them")
    with _stop_cleanly("backfill"), progress_bars(not (no_progress or as_json)) as reporter:
        result = runner.run_sync(
            listing=not skip_listing,
            start=start.date(),
            end=end.date(),
            refetch=refetch,
            reporter=reporter,
            on_wait=_say_waiting,
            accounts=list(accounts) or None,
        )
    print_summary(result, title="backfill", as_json=as_json)
    _exit_if_accounts_failed(result)


@main.command()
@click.option("--start", required=True, type=DATE, help="First local day, YYYY-MM-DD.")
@click.option("--end", type=DATE, help="Last local day (inclusive, default today), YYYY-MM-DD.")
@no_progress_option
@account_option
@friendly_errors
def reconcile(
    start: dt.datetime, end: dt.datetime | None, no_progress: bool, accounts: tuple[str, ...]
) -> None:
    """Re-read the listing back to START and load the calls that changed at the source."""
    last = end.date() if end is not None else dt.datetime.now(LOCAL_TZ).date()
    with _stop_cleanly("reconcile"), progress_bars(not no_progress) as reporter:
        chosen = list(accounts) or None
        result = runner.run_reconcile(
            start.date(), last, reporter=reporter, on_wait=_say_waiting, accounts=chosen
        )
    print_reconcile(result)
    _exit_if_accounts_failed(result.sync)


_FORMATS = ("table", "csv", "json", "parquet")


@main.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    help="Output format (default: table; with --output, from its extension).",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the result here.")
@friendly_errors
def sql(query: str, fmt: str | None, output: str | None) -> None:
    """Run QUERY on the analysts' read-only copy, or read-only on a PostgreSQL warehouse
    (never waits for a load)."""
    from bulutfon_pipeline.cli.query import run_sql

    run_sql(runner.read_settings(), query, fmt=fmt, output=output)


@main.command("purge-recordings")
@click.option(
    "--before", required=True, type=DATE, help="Delete recordings of calls before this local day."
)
@account_option
@friendly_errors
def purge_recordings_command(before: dt.datetime, accounts: tuple[str, ...]) -> None:
    """Delete the recording files and call_recordings rows of calls before BEFORE.

    The rows go first, in one transaction, then the files. If the command dies in
    between, the files are left without rows; run it again with the same date and it
    deletes them (it sweeps every file in the day folders before BEFORE).
    """
    summary, data_dir = runner.run_purge(
        before.date(), on_wait=_say_waiting, accounts=list(accounts) or None
    )
    console.print(
        f"purged recordings before {summary.before.isoformat()}: {summary.rows} rows, "
        f"{summary.files} files, {summary.stray_files} stray files, "
        f"{len(summary.folders)} day folders under {data_dir / 'recordings'}",
        highlight=False,
        soft_wrap=True,
    )


@main.command("accounts")
@account_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON array instead of a table (times in UTC, ISO 8601).",
)
@friendly_errors
def accounts_command(accounts: tuple[str, ...], as_json: bool) -> None:
    """List the PBX accounts (BULUTFON_ACCOUNTS_FILE, or `default`), each with its last
    load, its high-water mark and its pending calls."""
    statuses = runner.run_accounts_status(list(accounts) or None)
    (print_accounts_json if as_json else print_accounts)(statuses)


@main.command()
@click.option(
    "--uuid",
    "uuids",
    multiple=True,
    help="Only this call (repeatable); default every stored payload.",
)
@account_option
@friendly_errors
def replay(uuids: tuple[str, ...], accounts: tuple[str, ...]) -> None:
    """Re-normalise the stored raw payloads and rewrite the tables, without the API.

    Run it after a fix to the normaliser: cdrs, call_flow_steps, originations and the
    normalize rejects are rewritten from raw_cdr_details, one transaction per batch.
    """
    summary = runner.run_replay(
        list(uuids) or None, accounts=list(accounts) or None, on_wait=_say_waiting
    )
    console.print(
        f"replayed {summary.payloads} stored payloads in {summary.batches} batches: "
        f"{summary.updated} calls rewritten, {summary.new} new, "
        f"{summary.rejected} rejected",
        highlight=False,
    )


@main.command()
@click.option("--code", help="Exchange this OAuth authorization code for tokens.")
@click.option("--refresh", "refresh", is_flag=True, help="Refresh the stored token now.")
@click.option("--account", metavar="NAME", help="Whose tokens: an account of "
              "BULUTFON_ACCOUNTS_FILE (needed when the file has several).")  # fmt: skip
@friendly_errors
def auth(code: str | None, refresh: bool, account: str | None) -> None:
    """Obtain or refresh OAuth tokens; they are stored in BULUTFON_DATA_DIR (mode 0600)."""
    from bulutfon_pipeline.accounts import select_accounts
    from bulutfon_pipeline.api import exchange_code, force_refresh

    if bool(code) == bool(refresh):
        raise click.UsageError("give exactly one of --code CODE or --refresh")
    chosen = select_accounts([account] if account else None)
    if len(chosen) > 1:
        names = ", ".join(each.name for each in chosen)
        raise CLIError(f"BULUTFON_ACCOUNTS_FILE has several accounts; give --account ({names})")
    one = chosen[0]
    if one.auth in ("master", "apikey"):
        kind = "master token" if one.auth == "master" else "v2 API key"
        raise CLIError(f"account {one.name!r} signs in with a {kind}: it has no OAuth tokens")
    config = one.client_config()
    token = exchange_code(config, code) if code else force_refresh(config)
    expires = dt.datetime.fromtimestamp(token.expires_at, dt.UTC).astimezone(LOCAL_TZ)
    console.print(
        f"Stored a new token pair in {config.token_file} (mode 0600); "
        f"the access token expires at {expires:%Y-%m-%d %H:%M %Z}.",
        soft_wrap=True,  # the path whole, to copy
    )


@main.command()
@click.option("--days", default=30, show_default=True, help="Days of simulated calls.")
@click.option("--calls-per-day", default=300, show_default=True)
@click.option("--database", default="data/demo.duckdb", show_default=True, type=click.Path())
@no_progress_option
@friendly_errors
def demo(days: int, calls_per_day: int, database: str, no_progress: bool) -> None:
    """Run the whole pipeline against the embedded simulator into data/demo.duckdb."""
    from bulutfon_pipeline.cli.demo import demo as run_demo

    run_demo(
        days=days,
        calls_per_day=calls_per_day,
        database=Path(database),
        show_progress=not no_progress,
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Webserver bind address.")
@click.option("--port", default=3000, show_default=True, help="Webserver port.")
@click.option("--simulator-port", default=8765, show_default=True)
@click.option("--database", default="data/ui.duckdb", show_default=True, type=click.Path())
@friendly_errors
def ui(host: str, port: int, simulator_port: int, database: str) -> None:
    """Start the simulator and `dagster dev` pointed at it (http://127.0.0.1:3000)."""
    from bulutfon_pipeline.cli.ui import run_ui

    run_ui(
        settings=runner.read_settings(),
        host=host,
        port=port,
        simulator_port=simulator_port,
        database=Path(database),
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@friendly_errors
def webhook(host: str, port: int) -> None:
    """Receive Bulutfon's webhook posts into the inbox until interrupted (README: Webhooks)."""
    import logging

    from bulutfon_pipeline.webhook.config import WebhookConfig
    from bulutfon_pipeline.webhook.inbox import InboxError
    from bulutfon_pipeline.webhook.server import serve

    config = WebhookConfig.from_env()
    config.check_host(host)  # before any side effect: a refusal is one line, nothing else
    # The receiver's own lines (refused posts with their reason) on stderr, timestamped.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    receiver_log = logging.getLogger("bulutfon_pipeline.webhook")
    receiver_log.addHandler(handler)
    receiver_log.setLevel(logging.INFO)
    try:
        serve(
            config,
            host=host,
            port=port,
            on_ready=lambda url: err_console.print(
                f"receiving webhooks on {url}; inbox {config.inbox_path}"
                + ("" if config.requires_auth else " (no auth: loopback only)"),
                highlight=False,
            ),
        )
    except InboxError as error:
        raise CLIError(str(error)) from None
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once in-flight posts are answered
        err_console.print("stopped; every post answered 200 is in the inbox")
        sys.exit(130)


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
            err_console.print(error_line(f"{error.format_message()}{hint}"), highlight=False)
        sys.exit(error.exit_code)


if __name__ == "__main__":  # pragma: no cover
    run()
