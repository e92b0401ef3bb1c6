"""The CLI's progress bars when accounts load at once: one bar per task adds up every
account's part of it, reported from any thread; and a sync closes every part it started,
also the part of an account that failed."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from bulutfon_pipeline.cli.output import RichReporter
from bulutfon_pipeline.runner import run_sync
from bulutfon_pipeline_tests.helpers import environment


def _reporter() -> tuple[RichReporter, Progress]:
    bar = Progress(console=Console(file=io.StringIO()))  # never started: nothing drawn
    return RichReporter(bar), bar


def _shown(bar: Progress) -> dict[str, tuple[float, float | None]]:
    return {task.description: (task.completed, task.total) for task in bar.tasks}


def _from_threads(*calls: object) -> None:
    """Each call on a thread of its own, one after the other."""
    for call in calls:
        thread = threading.Thread(target=call)  # type: ignore[arg-type]
        thread.start()
        thread.join(10)


def test_one_bar_adds_up_the_accounts_parts_from_any_thread() -> None:
    reporter, bar = _reporter()
    reporter.start("call details", 3, part="izmir")
    reporter.start("call details", 2, part="ankara")
    _from_threads(
        lambda: reporter.advance("call details", 1, part="izmir"),
        lambda: reporter.advance("call details", 2, part="izmir"),  # a writer's thread
        lambda: reporter.advance("call details", 1, part="ankara"),
    )
    assert _shown(bar) == {"call details": (4, 5)}
    reporter.finish("call details", part="izmir")
    # ankara stopped at 1 of 2 (its account failed): its part counts what it did.
    reporter.finish("call details", part="ankara")
    assert _shown(bar) == {"call details": (4, 4)}


def test_a_total_is_known_once_every_part_of_it_is() -> None:
    reporter, bar = _reporter()
    reporter.start("listing pages", None, part="izmir")
    reporter.start("listing pages", None, part="ankara")
    reporter.advance("listing pages", 2, part="izmir")
    reporter.finish("listing pages", part="izmir")
    assert _shown(bar) == {"listing pages": (2, None)}  # ankara's scan goes on
    reporter.advance("listing pages", 1, part="ankara")
    reporter.finish("listing pages", part="ankara")
    assert _shown(bar) == {"listing pages": (3, 3)}


def test_a_part_started_again_adds_to_what_it_did() -> None:
    # One account's second range of days: the bar counts the command's work.
    reporter, bar = _reporter()
    reporter.start("call details", 2)
    reporter.advance("call details", 2)
    reporter.finish("call details")
    reporter.start("call details", 3)
    reporter.advance("call details", 1)
    assert _shown(bar) == {"call details": (3, 5)}


class _Recorder:
    """An installed reporter (``progress.PartsReporter``) that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def start(self, task: str, total: int | None, part: str) -> None:
        with self._lock:
            self.calls.append(("start", task, part))

    def advance(self, task: str, amount: int, part: str) -> None:
        with self._lock:
            self.calls.append(("advance", task, part))

    def finish(self, task: str, part: str) -> None:
        with self._lock:
            self.calls.append(("finish", task, part))


def test_a_sync_finishes_every_part_it_started_also_a_failed_accounts(
    simulator_factory, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=5, accounts=["izmir"])
    (tmp_path / "accounts.toml").write_text(
        '[accounts.izmir]\naccess_token_env = "TOKEN_IZMIR"\n'
        '[accounts.bursa]\naccess_token_env = "TOKEN_BURSA"\n'
    )
    env = {
        **sim.env(),
        "BULUTFON_ACCESS_TOKEN": "",
        "BULUTFON_ACCOUNTS_FILE": str(tmp_path / "accounts.toml"),
        "BULUTFON_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_START_DATE": "2015-01-01",
        "TOKEN_IZMIR": sim.env(account="izmir")["BULUTFON_ACCESS_TOKEN"],
        "TOKEN_BURSA": "not-a-token",  # its listing scan starts, then gets a 401
    }
    recorder = _Recorder()
    with environment(env):
        result = run_sync(reporter=recorder)
    assert list(result.failures) == ["bursa"] and list(result.by_account) == ["izmir"]
    started = {(task, part) for kind, task, part in recorder.calls if kind == "start"}
    finished = {(task, part) for kind, task, part in recorder.calls if kind == "finish"}
    assert ("listing pages", "bursa") in started
    assert {("accounts", ""), ("listing pages", "izmir"), ("call details", "izmir")} <= started
    assert finished == started
    # One advance of the accounts' bar per account, loaded or failed.
    assert recorder.calls.count(("advance", "accounts", "")) == 2
