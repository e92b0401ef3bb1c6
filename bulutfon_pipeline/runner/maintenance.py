"""Maintenance commands that rewrite the warehouse without the API: purging old
recordings and replaying the stored payloads, account by account, under the sync lock."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bulutfon_pipeline.accounts import Account
from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.errors import ConfigError
from bulutfon_pipeline.recordings import PurgeSummary
from bulutfon_pipeline.replay import ReplaySummary, replay_details
from bulutfon_pipeline.runner.accounts import select
from bulutfon_pipeline.runner.errors import SetupError
from bulutfon_pipeline.runner.preflight import (
    check_warehouse,
    lock_wait_lines,
    read_settings,
    writer_lock,
)
from bulutfon_pipeline.runner.sync import publish_for_analysts
from bulutfon_pipeline.settings import Settings
from bulutfon_pipeline.warehouse import Warehouse


def run_purge(
    before: dt.date,
    *,
    on_wait: Callable[[str], None] | None = None,
    accounts: Sequence[str] | None = None,
) -> tuple[PurgeSummary, Path]:
    """Delete the recordings of calls before ``before`` (of ``accounts``, default every
    account); the summary (summed over the accounts) and the data folder.

    Raises:
        SetupError, BusyError: before anything is deleted.
    """
    from bulutfon_pipeline.recordings import purge_recordings

    chosen = select(accounts)
    settings = read_settings()
    total = PurgeSummary(before=before)
    with _locked_warehouse(settings, chosen, on_wait) as shared:
        for account in chosen:
            warehouse = Warehouse.on(shared.db, account=account.name)
            summary = purge_recordings(
                warehouse,
                data_dir=settings.data_dir,
                before=before,
                folder=account.recordings_folder,
            )
            total.rows += summary.rows
            total.files += summary.files
            total.stray_files += summary.stray_files
            total.folders.extend(summary.folders)
    return total, settings.data_dir


def run_replay(
    uuids: Sequence[str] | None = None,
    *,
    accounts: Sequence[str] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> ReplaySummary:
    """Re-normalise the stored raw payloads (of ``uuids``, default all) of ``accounts``
    (default every account) into the tables, one account after the other; v2 payloads
    through ``BULUTFON_V2_FIELD_MAP``, as the client renamed them when it loaded them.

    Raises:
        SetupError, BusyError: before anything is written (a bad setting, an unknown
            account, another sync holding the lock).
    """
    settings = read_settings()
    chosen = select(accounts)
    try:
        renames = ClientConfig.from_env().v2_renames
    except ConfigError as error:
        raise SetupError(str(error)) from None
    total = ReplaySummary()
    with _locked_warehouse(settings, chosen, on_wait) as warehouse:
        for account in chosen:
            own = Warehouse.on(warehouse.db, account=account.name)
            done = replay_details(
                own, uuids, batch_size=settings.detail_batch_size, v2_field_map=renames
            )
            total = total.plus(done)
    return total


@contextlib.contextmanager
def _locked_warehouse(
    settings: Settings,
    chosen: Sequence[Account],
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Warehouse]:
    """The warehouse, schema in place, under the sync lock of the ``chosen`` accounts (no
    sync of theirs runs meanwhile); the analysts' copy is published when the block
    succeeds.

    Raises:
        SetupError, BusyError: before anything is written.
    """
    check_warehouse(settings)
    accounts = [account.name for account in chosen]
    with writer_lock(settings, accounts=accounts, on_wait=on_wait), lock_wait_lines(on_wait):
        warehouse = Warehouse.from_settings(settings)
        warehouse.ensure_schema()
        yield warehouse
        publish_for_analysts(warehouse, settings)
