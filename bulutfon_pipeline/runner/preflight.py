"""Before a run: the settings, the credentials, the warehouse path and the sync lock.

The sync lock keeps two syncs from loading one warehouse at once: a ``flock`` on a file
beside a DuckDB warehouse, a PostgreSQL advisory lock for a server warehouse
(:func:`writer_lock` picks).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from bulutfon_pipeline.api.errors import ConfigError
from bulutfon_pipeline.runner.errors import BusyError, SetupError
from bulutfon_pipeline.settings import DEFAULT_ACCOUNT, Settings, SettingsError
from bulutfon_pipeline.warehouse.errors import LOCK_WAIT_LOGGER


def check_warehouse_path(path: Path) -> None:
    """Fail with one line when the warehouse file cannot be created or written.

    Raises:
        SetupError: the folder is missing or read-only, or the path is a folder.
    """
    if not path.parent.exists():
        raise SetupError(
            f"the folder of BULUTFON_DUCKDB_PATH ({path.parent}) does not exist; "
            "create it or point BULUTFON_DUCKDB_PATH elsewhere"
        )
    if path.is_dir():
        raise SetupError(
            f"BULUTFON_DUCKDB_PATH ({path}) is a folder; point it at a file, "
            f"e.g. {path / 'bulutfon.duckdb'}"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise SetupError(
            f"the warehouse file {path} is read-only; make it writable or point "
            "BULUTFON_DUCKDB_PATH elsewhere"
        )
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise SetupError(f"cannot create the warehouse in {path.parent}: the folder is read-only")


def read_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment.

    Raises:
        SetupError: a variable is malformed (one line naming it).
    """
    try:
        return Settings.from_env(env)
    except SettingsError as error:
        raise SetupError(str(error)) from None


def preflight(env: Mapping[str, str] | None = None, *, check_credentials: bool = True) -> Settings:
    """Validate the settings, the credentials and the warehouse path before any run.

    Args:
        check_credentials: check today's single account's credentials; ``False`` for the
            accounts of ``BULUTFON_ACCOUNTS_FILE``, each of which fails alone in its own
            work when its credentials are missing.

    Raises:
        SetupError: one line saying what to fix.
    """
    from bulutfon_pipeline.resources import BulutfonResource

    settings = read_settings(env)
    if not check_credentials:
        check_warehouse(settings)
        return settings
    try:
        config = BulutfonResource().client_config(env)
    except ConfigError as error:
        raise SetupError(str(error)) from None
    if config.auth_mode is None and not config.is_v2 and not config.api_key:
        raise SetupError(
            "no Bulutfon credentials: set BULUTFON_ACCESS_TOKEN, or BULUTFON_CLIENT_ID, "
            "BULUTFON_CLIENT_SECRET and BULUTFON_REFRESH_TOKEN (see .env.example)"
        )
    try:
        config.require_auth_mode()  # v2 without a key, or a v2 key on v1: one line
    except ConfigError as error:
        raise SetupError(str(error)) from None
    check_warehouse(settings)
    return settings


def check_warehouse(settings: Settings) -> None:
    """:func:`check_warehouse_path` for a DuckDB warehouse; a PostgreSQL one is checked
    when the run first connects (the error then names the server, never its password).

    Raises:
        SetupError: the DuckDB path cannot be used.
    """
    if settings.warehouse_url is None:
        check_warehouse_path(settings.duckdb_path)


@contextlib.contextmanager
def writer_lock(
    settings: Settings,
    *,
    accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """The sync lock of ``settings``' warehouse for ``accounts``, for the block, waiting up
    to ``BULUTFON_LOCK_TIMEOUT_S`` (``on_wait`` gets one line when it has to wait).

    DuckDB: :func:`sync_lock`, a ``flock`` beside the file (one writing process, whatever
    its accounts). PostgreSQL: a session-level advisory lock of each account in the
    warehouse's schema, on a connection of its own; two syncs of one account exclude each
    other, syncs of different accounts (``sync --account``) write at once. The server
    drops them when that connection ends, so a killed sync never leaves one held.

    Raises:
        BusyError: another sync still holds it after the timeout.
        SetupError: the PostgreSQL server cannot be reached or refuses the connection.
    """
    if settings.warehouse_url is None:
        with sync_lock(settings.duckdb_path, timeout_s=settings.lock_timeout_s, on_wait=on_wait):
            yield
        return
    from bulutfon_pipeline.warehouse import Warehouse, WarehouseError, WarehouseLockedError

    warehouse = Warehouse.from_settings(settings)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                warehouse.advisory_lock(settings.lock_timeout_s, on_wait, accounts=accounts)
            )
        except WarehouseLockedError as error:
            raise BusyError(str(error)) from None
        except WarehouseError as error:
            # The run's first connection to the server: no server there, no such
            # database or a refused login is the user's to fix (exit 2), like a DuckDB
            # path that cannot be used. The message never shows the password.
            raise SetupError(str(error)) from None
        yield


#: How often a sync waiting for another sync's lock tries again.
LOCK_POLL_S = 0.2


@contextlib.contextmanager
def sync_lock(
    db_path: Path,
    *,
    timeout_s: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock next to the warehouse for the block.

    When another process holds it, ``on_wait`` gets one line at once (who holds it, how
    long this one waits) and the lock is tried again every :data:`LOCK_POLL_S` until
    ``timeout_s`` (``BULUTFON_LOCK_TIMEOUT_S``) has passed. ``flock`` is released by the
    kernel when its holder dies, so a killed sync never leaves it held.

    Raises:
        BusyError: another process still holds it after ``timeout_s`` (the message names
            its pid).
    """
    lock_path = db_path.with_name(db_path.name + ".sync.lock")
    handle = lock_path.open("a+")
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(handle)
            if time.monotonic() >= deadline:
                handle.close()
                waited = f" after waiting {timeout_s:g} s" if timeout_s > 0 else ""
                raise BusyError(
                    f"another sync (pid {holder}) is loading {db_path}; gave up{waited} "
                    "(BULUTFON_LOCK_TIMEOUT_S); wait for it to finish"
                ) from None
            if not announced and on_wait is not None:
                on_wait(
                    f"waiting for another sync (pid {holder}) to finish loading {db_path}; "
                    f"giving up after {timeout_s:g} s (BULUTFON_LOCK_TIMEOUT_S)"
                )
            announced = True
            time.sleep(min(LOCK_POLL_S, max(deadline - time.monotonic(), 0.0)))
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _holder(handle: IO[str]) -> str:
    """The pid the lock's holder wrote into the lock file, or a stand-in."""
    handle.seek(0)
    return handle.read().strip() or "another process"


@contextlib.contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def lock_wait_lines(on_wait: Callable[[str], None] | None) -> Iterator[None]:
    """Pass the warehouse's "waiting for another writer's lock" lines to ``on_wait`` for
    the block (another process, not a sync, holds the DuckDB file: an analyst's
    read-write connection, a DuckDB shell)."""
    if on_wait is None:
        yield
        return
    say = on_wait

    class _Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say(record.getMessage())

    handler = _Forward(logging.WARNING)
    LOCK_WAIT_LOGGER.addHandler(handler)
    try:
        yield
    finally:
        LOCK_WAIT_LOGGER.removeHandler(handler)
