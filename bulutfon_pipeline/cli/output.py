"""Rendering: the consoles, progress bars, the sync summary and query result tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

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
from rich.text import Text

from bulutfon_pipeline.runner import AccountStatus, ReconcileResult, SyncResult
from bulutfon_pipeline.settings import LOCAL_TZ


def _console(**kwargs: Any) -> Console:
    """A console that prints text as it is, never as Rich markup: a value, a path or a
    message with square brackets (a caller named ``[VIP] Ahmet``, a file ``[/x].toml``)
    prints whole, where markup dropped it or failed with a traceback. Styling is explicit
    (:func:`error_line`, :class:`~rich.text.Text`)."""
    return Console(markup=False, **kwargs)


console = _console(stderr=False)
err_console = _console(stderr=True, soft_wrap=True)


def error_line(message: str) -> Text:
    """``error: <message>``, the prefix in bold red, the message as it is."""
    return Text.assemble(("error:", "bold red"), " ", message)


class RichReporter:
    """Progress bars on a terminal, driven by :mod:`bulutfon_pipeline.progress`: one bar
    per task (listing pages, call details, recordings, accounts). Accounts loading at once
    report their parts of a task under their names, from their threads; the bar adds them
    up, its total known once every part's is (a listing's pages: when its scan ends). A
    part started again (the next range of days) adds to what it did before."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        #: task -> part -> [its total (None: not known yet), done], what it did before
        #: it was started again included in both
        self._parts: dict[str, dict[str, list[Any]]] = {}

    def start(self, task: str, total: int | None, part: str = "") -> None:
        with self._lock:
            parts = self._parts.setdefault(task, {})
            done = parts[part][1] if part in parts else 0
            parts[part] = [None if total is None else done + total, done]
            if task not in self._tasks:
                self._tasks[task] = self._bar.add_task(task, total=total)
            self._show(task)

    def advance(self, task: str, amount: int = 1, part: str = "") -> None:
        with self._lock:
            entry = self._parts.get(task, {}).get(part)
            if entry is not None:
                entry[1] += amount
                self._show(task)

    def finish(self, task: str, part: str = "") -> None:
        with self._lock:
            entry = self._parts.get(task, {}).get(part)
            if entry is not None:
                entry[0] = entry[1]
                self._show(task)

    def _show(self, task: str) -> None:
        entries = self._parts[task].values()
        unknown = any(total is None for total, _ in entries)
        self._bar.update(
            self._tasks[task],
            total=None if unknown else sum(total for total, _ in entries),
            completed=sum(done for _, done in entries),
            visible=True,
        )


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[RichReporter | None]:
    """A reporter drawing progress bars on a terminal; ``None`` when disabled or piped."""
    if not enabled or not console.is_terminal:
        yield None
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
    with bar:
        yield RichReporter(bar)


def print_summary(result: SyncResult, *, title: str = "sync", as_json: bool = False) -> None:
    """A summary table of a sync or backfill (``title``), or its JSON (``as_json``)."""
    if as_json:
        print_summary_json(result, command=title)
        return
    table = Table(title=f"bulutfon-pipeline {title}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    counts = _counts(result)
    if (listing := counts["listing"]) is not None:
        table.add_row("listing pages read", str(listing["pages"]))
        table.add_row("calls in listing scan", str(listing["calls"]))
        table.add_row("new calls listed", str(listing["new"]))
        table.add_row("calls changed at the source", str(listing["changed"]))
    if (directory := counts["directory"]) is not None:
        table.add_row(
            "directory versions opened / closed (requests)",
            f"{directory['opened']} / {directory['closed']} ({directory['requests']})",
        )
    ranges = ", ".join(a if a == b else f"{a}..{b}" for a, b in counts["days"])
    table.add_row("days loaded", ranges or "none (nothing pending)")
    details = counts["details"]
    table.add_row("details fetched", str(details["fetched"]))
    table.add_row("calls new", str(details["new"]))
    table.add_row("calls updated", str(details["updated"]))
    table.add_row("records rejected (see load_rejects)", str(counts["rejected"]))
    if result.recordings:
        recordings = counts["recordings"]
        table.add_row(
            "recordings downloaded / skipped / rejected",
            f"{recordings['downloaded']} / {recordings['skipped']} / {recordings['rejected']}",
        )
    api = counts["api"]
    table.add_row(
        "API requests / retries / 429s / token refreshes",
        f"{api['requests']} / {api['retries']} / {api['rate_limited']} / {api['refreshes']}",
    )
    if result.published is not None:
        table.add_row(
            "analysts' copy published (bulutfon-pipeline sql)",
            f"{result.published.path} in {result.published.seconds:.2f} s",
        )
    table.add_row("duration", f"{result.seconds:.1f} s")
    console.print(table)
    if result.accounts:
        _print_by_account(result, title)


def print_summary_json(result: SyncResult, *, command: str) -> None:
    """A sync's or backfill's summary as one JSON object on stdout, for scripts and
    monitors: the totals of :func:`print_summary`'s table and, with an accounts file,
    each account's own (or its error), in the file's order."""
    accounts = []
    for name in result.accounts:
        done = result.by_account.get(name)
        entry: dict[str, Any] = {"account": name}
        if done is not None:
            entry.update(result="loaded", **_counts(done))
        else:
            entry.update(result=_not_loaded(result, name), error=result.failures.get(name))
        accounts.append(entry)
    published = result.published
    summary = {
        "command": command,
        **_counts(result),
        "published": None if published is None else str(published.path),
        "accounts": accounts,
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")


def _not_loaded(result: SyncResult, name: str) -> str:
    """The result of account ``name``, which did not load: ``failed``, or ``not run``."""
    return "failed" if name in result.failures else "not run"


def _counts(result: SyncResult) -> dict[str, Any]:
    """What a sync or backfill (or one account's part of it) did, as plain values: what
    its table shows and its JSON holds (each range of days once, however many accounts
    loaded it)."""
    listing, directory = result.listing, [d for d in result.directory if not d.skipped]
    api = result.api
    return {
        "listing": None
        if listing is None
        else {
            "pages": listing.pages,
            "calls": listing.items,
            "new": listing.new,
            "changed": listing.changed,
        },
        "directory": None
        if not directory
        else {
            "opened": sum(sum(d.opened.values()) for d in directory),
            "closed": sum(sum(d.closed.values()) for d in directory),
            "requests": sum(d.requests for d in directory),
        },
        "days": [[a.isoformat(), b.isoformat()] for a, b in sorted(set(result.ranges))],
        "details": {name: result.detail_total(name) for name in ("fetched", "new", "updated")},
        "rejected": result.rejected,
        "recordings": None
        if result.recordings is None
        else {name: result.recording_total(name) for name in ("downloaded", "skipped", "rejected")},
        "api": {
            name: api.get(name, 0) for name in ("requests", "retries", "rate_limited", "refreshes")
        },
        "seconds": round(result.seconds, 1),
    }


def _print_by_account(result: SyncResult, title: str) -> None:
    """A sync's or backfill's accounts of BULUTFON_ACCOUNTS_FILE, one row each, in the
    file's order: what each loaded, or that it failed (its error follows on stderr)."""
    table = Table(
        title=f"bulutfon-pipeline {title}, by account", show_header=True, header_style="bold"
    )
    table.add_column("account")
    for column in ("new listed", "calls new", "updated", "rejected", "API requests", "429s"):
        table.add_column(column, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for name in result.accounts:
        done = result.by_account.get(name)
        if done is None:
            table.add_row(name, *[""] * 7, _not_loaded(result, name))
            continue
        counts = _counts(done)
        table.add_row(
            name,
            str(counts["listing"]["new"]) if counts["listing"] is not None else "",
            str(counts["details"]["new"]),
            str(counts["details"]["updated"]),
            str(counts["rejected"]),
            str(counts["api"]["requests"]),
            str(counts["api"]["rate_limited"]),
            f"{done.seconds:.1f}",
            "loaded",
        )
    _wide().print(table)


def _wide() -> Console:
    """Standard output, wide enough for every column of a table when piped, like the
    summary of ``sql``."""
    return console if console.is_terminal else _console(stderr=False, width=200)


def print_accounts(statuses: Sequence[AccountStatus]) -> None:
    """The accounts, each with its last load, high-water mark and pending calls."""
    table = Table(
        title="bulutfon-pipeline accounts", show_header=True, header_style="bold",
        caption=f"times in the PBX's local time ({LOCAL_TZ.key}); --json gives them in UTC",
    )  # fmt: skip
    columns = ("account", "last load", "high-water mark", "pending calls", "pending days")
    for column in (*columns, "last sync failed"):
        table.add_column(column, justify="right" if column.startswith("pending") else "left")
    for status in statuses:
        days = status.pending_days
        span = "" if not days else days[0].isoformat()
        if len(days) > 1:
            span = f"{days[0].isoformat()}..{days[-1].isoformat()} ({len(days)})"
        table.add_row(
            status.name if status.from_file else f"{status.name} (no accounts file)",
            _local(status.last_load),
            _local(status.high_water_mark),
            str(status.pending_calls),
            span,
            "" if status.last_error_at is None else _local(status.last_error_at),
        )
    out = _wide()
    out.print(table)
    for status in statuses:  # each failed account's error, under the table
        if status.last_error is not None:
            out.print(f"last sync failed: {status.last_error}", highlight=False)


def print_accounts_json(statuses: Sequence[AccountStatus]) -> None:
    """The accounts as one JSON array on stdout, for scripts and monitors: each with its
    name, ``from_file``, ``last_load`` and ``high_water_mark`` (UTC, ISO 8601, to the
    second, ``null`` for never), ``pending_calls``, ``pending_days`` (local days) and
    ``last_error`` (its last sync's ``at`` and ``error`` line; ``null`` if it loaded)."""
    rows = [
        {
            "account": status.name,
            "from_file": status.from_file,
            "last_load": _utc(status.last_load),
            "high_water_mark": _utc(status.high_water_mark),
            "pending_calls": status.pending_calls,
            "pending_days": [day.isoformat() for day in status.pending_days],
            "last_error": None
            if status.last_error is None
            else {"at": _utc(status.last_error_at), "error": status.last_error},
        }
        for status in statuses
    ]
    sys.stdout.write(json.dumps(rows, indent=2) + "\n")


def _local(instant: Any) -> str:
    """An instant in the PBX's local time, to the second; ``never`` for none."""
    if instant is None:
        return "never"
    return f"{_aware(instant).astimezone(LOCAL_TZ):%Y-%m-%d %H:%M:%S}"


def _utc(instant: dt.datetime | None) -> str | None:
    """An instant in UTC, ISO 8601 to the second with a ``Z``; ``None`` for none."""
    if instant is None:
        return None
    return f"{_aware(instant).astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


def _aware(instant: dt.datetime) -> dt.datetime:
    """``instant`` with its zone (a naive one is stored as UTC without its zone)."""
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.UTC)


def print_rows(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    sql: str | None = None,
    full_width_when_piped: bool = False,
) -> None:
    """A query's result as a table (``None`` shown empty), after the SQL when given.

    With ``full_width_when_piped``, output that is not a terminal is not cut to 80
    columns: every cell is printed whole (``sql … > file``).
    """
    out = console
    if full_width_when_piped and not console.is_terminal:
        out = _console(stderr=False, width=100_000)
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    if sql is not None:
        out.print(Text(sql, style="dim"), highlight=False)
    out.print(table)


def print_reconcile(result: ReconcileResult) -> None:
    """The changes a reconcile found, one row per changed field, and a summary line."""
    title = f"bulutfon-pipeline reconcile {result.start}..{result.end}"
    table = Table(title=title, header_style="bold")
    several = bool(result.sync.accounts)  # an accounts file: which account's call
    if several:
        table.add_column("account", no_wrap=True)
    table.add_column("call date", no_wrap=True)
    table.add_column("uuid", no_wrap=True, min_width=36)  # whole, to copy into a query
    for column in ("field", "old value", "new value"):
        table.add_column(column, overflow="fold")
    for change in result.changes:
        table.add_row(*[change.account] * several, str(change.call_date), change.uuid,
                      change.field, change.old_value or "", change.new_value or "")  # fmt: skip
    out = _wide()
    out.print(table)
    sync = result.sync
    pages = sync.listing.pages if sync.listing is not None else 0
    changed = sync.listing.changed if sync.listing is not None else 0
    out.print(
        f"{pages} listing pages, {changed} calls changed, "
        f"{sync.detail_total('fetched')} details fetched, {len(result.changes)} changes, "
        f"{sync.detail_total('recordings_deleted')} recordings deleted",
        highlight=False,
    )
