"""The runner's errors, and finding the project's own error inside a failed Dagster run.

* :class:`SetupError` - something the user can fix: settings, credentials, a bad path;
* :class:`BusyError` - another sync holds the warehouse;
* :class:`RunFailedError` - the run itself failed (e.g. the disk filled up).
"""

from __future__ import annotations

from bulutfon_pipeline.api.errors import BulutfonError
from bulutfon_pipeline.settings import SettingsError
from bulutfon_pipeline.warehouse import WarehouseError, WarehouseLockedError


class RunnerError(Exception):
    """A problem the runner reports in one line."""


class SetupError(RunnerError):
    """Settings, credentials or a path the user must fix before anything runs."""


class BusyError(RunnerError):
    """Another sync holds the warehouse."""


class RunFailedError(RunnerError):
    """The run itself failed (e.g. the disk filled up); the warehouse keeps its last commit."""


def user_error(error: BaseException) -> BaseException | None:
    """The first project error in an exception chain (Dagster wraps asset errors)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BulutfonError | WarehouseError | SettingsError | RunnerError):
            return current
        stack.extend([current.__cause__, current.__context__])
        stack.append(getattr(current, "user_exception", None))
    return None


def is_runtime_failure(error: BaseException) -> bool:
    """A failure of the run itself (e.g. disk full) rather than of the configuration."""
    return isinstance(error, RunFailedError) or (
        isinstance(error, WarehouseError) and not isinstance(error, WarehouseLockedError)
    )
