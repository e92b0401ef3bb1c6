"""Exit codes, and turning the runner's and the project's errors into one line each."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bulutfon_pipeline.cli.output import err_console, error_line
from bulutfon_pipeline.warehouse.errors import WarehouseLockedError

EXIT_FAILED = 1  # the run failed for another reason (details in the message)
EXIT_CONFIG = 2  # a problem the user can fix: configuration, input, credentials
EXIT_BUSY = 3  # another sync (or another writer of the DuckDB file) holds the warehouse
EXIT_SIGINT = 130  # interrupted by Ctrl-C (128 + SIGINT)

F = TypeVar("F", bound=Callable[..., Any])


class CLIError(click.ClickException):
    """A one-line, user-fixable problem."""

    exit_code = EXIT_CONFIG

    def show(self, file: Any = None) -> None:
        err_console.print(error_line(self.format_message()), highlight=False)


class BusyError(CLIError):
    exit_code = EXIT_BUSY


class RunFailedError(CLIError):
    """The run itself failed (e.g. the disk filled up); the warehouse keeps its last commit."""

    exit_code = EXIT_FAILED


def as_cli_error(error: BaseException) -> CLIError | None:
    """The one-line CLI error for a runner or project error anywhere in the chain."""
    from bulutfon_pipeline import runner

    found = runner.user_error(error)
    if found is None:
        return None
    if isinstance(found, runner.BusyError | WarehouseLockedError):
        return BusyError(str(found))
    if runner.is_runtime_failure(found):
        return RunFailedError(str(found))
    return CLIError(str(found))


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
            sys.exit(EXIT_SIGINT)
        except Exception as error:
            cli_error = as_cli_error(error)
            if cli_error is None:
                raise
            raise cli_error from None

    return wrapper  # type: ignore[return-value]
