"""Partitions: PBX account x local day (Europe/Istanbul days), the accounts' dynamic
partitions, and ranged runs.

The listing is partitioned by account (``account_partitions``, a dynamic partition per
account of ``BULUTFON_ACCOUNTS_FILE``, or ``default``); the detail and recording loads by
account x day (``account_day_partitions``, keys ``<account>|<YYYY-MM-DD>``). The accounts
are registered as partitions by ``bulutfon_accounts_sensor`` (the UI and the daemon) and
by the runner (``register_accounts``, before its in-process runs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import dagster as dg

# Dagster has no public way to start one run over a range of partitions in-process
# (``materialize`` and ``RunRequest`` take a single ``partition_key``), but a run tagged
# with the range's first and last key is what a UI backfill with a single-run policy
# launches. This module is the only place that touches those internal tag names.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from bulutfon_pipeline.settings import DEFAULT_ACCOUNT, LOCAL_TZ_NAME, Settings

#: The run tag naming the PBX account a run loads; the run queue's
#: ``tag_concurrency_limits`` (deploy/dagster.yaml) allow one run per account at a time.
ACCOUNT_TAG = "bulutfon/account"
#: The name of the accounts' dynamic partitions.
ACCOUNTS_PARTITIONS_NAME = "bulutfon_accounts"
#: The dimension names of ``account_day_partitions`` (Dagster orders them by name, so a
#: key reads ``<account>|<day>``).
ACCOUNT_DIM = "account"
DAY_DIM = "day"

#: One partition per local day from BULUTFON_START_DATE; ``end_offset=1`` makes today's
#: (still filling) day available. Definitions must load with any environment, so a bad
#: start date falls back to the default here; the CLI reports it in one line.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=Settings.from_env_or_defaults().start_date.isoformat(),
    timezone=LOCAL_TZ_NAME,
    end_offset=1,
)

#: One partition per PBX account (the listing's partitions).
account_partitions = dg.DynamicPartitionsDefinition(name=ACCOUNTS_PARTITIONS_NAME)

#: Account x day (the detail and recording loads' partitions).
account_day_partitions = dg.MultiPartitionsDefinition(
    {ACCOUNT_DIM: account_partitions, DAY_DIM: daily_partitions}
)


def account_day_key(account: str, day: dt.date) -> dg.MultiPartitionKey:
    """The partition key of ``account``'s local day ``day``."""
    return dg.MultiPartitionKey({ACCOUNT_DIM: account, DAY_DIM: day.isoformat()})


def split_key(key: str) -> tuple[str, dt.date]:
    """The account and the day of an ``account_day_partitions`` key."""
    dims = getattr(key, "keys_by_dimension", None)
    if dims is None:
        account, _, day = str(key).partition("|")
        return account, dt.date.fromisoformat(day)
    return dims[ACCOUNT_DIM], dt.date.fromisoformat(dims[DAY_DIM])


def accounts_of(keys: Iterable[str]) -> list[str]:
    """The accounts of some ``account_day_partitions`` keys, in their order, once each."""
    return list(dict.fromkeys(split_key(key)[0] for key in keys))


def range_tags(first: dt.date, last: dt.date, account: str = DEFAULT_ACCOUNT) -> dict[str, str]:
    """The run tags that make one run cover ``account``'s local days ``first..last``
    (inclusive), with :data:`ACCOUNT_TAG`."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: str(account_day_key(account, first)),
        ASSET_PARTITION_RANGE_END_TAG: str(account_day_key(account, last)),
        ACCOUNT_TAG: account,
    }


def run_account(tags: dict[str, str]) -> str | None:
    """The account a run of the account-partitioned listing loads: its
    :data:`ACCOUNT_TAG`, or (a run launched from the UI) its partition key."""
    return tags.get(ACCOUNT_TAG) or tags.get(PARTITION_NAME_TAG)


def register_accounts(instance: dg.DagsterInstance, names: Sequence[str]) -> list[str]:
    """Add the accounts ``names`` that ``instance`` does not know yet as partitions; the
    names added (none when every one is known: idempotent)."""
    known = set(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
    new = [name for name in dict.fromkeys(names) if name not in known]
    if new:
        instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, new)
    return new


@dg.sensor(
    minimum_interval_seconds=60,
    # Running by default: it launches no run, it only makes the accounts of the file
    # appear as partitions (without it no account x day partition exists to backfill).
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers the accounts of BULUTFON_ACCOUNTS_FILE (or `default`) as partitions.",
)
def bulutfon_accounts_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Add every account of the file that is not a partition yet (never removes one: its
    rows stay in the warehouse)."""
    from bulutfon_pipeline.accounts import load_accounts

    names = [account.name for account in load_accounts()]
    known = set(context.instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))
    new = [name for name in names if name not in known]
    if not new:
        return dg.SensorResult(skip_reason="every account is a partition")
    context.log.info("registering accounts as partitions: %s", ", ".join(new))
    return dg.SensorResult(dynamic_partitions_requests=[account_partitions.build_add_request(new)])
