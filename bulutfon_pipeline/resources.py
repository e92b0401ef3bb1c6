"""Dagster resources: the Bulutfon API client, the warehouse and the settings.

Secrets come in through ``EnvVar`` (resolved at run time, never stored in run config);
every other value falls back to the environment, then to ``settings``. Nothing reads a
credential at import time, so the definitions load with no environment set and an asset
that needs credentials fails at run time with one clear line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from bulutfon_pipeline.accounts import Account
from bulutfon_pipeline.api import BulutfonClient, ClientConfig
from bulutfon_pipeline.api.errors import ConfigError
from bulutfon_pipeline.settings import (
    DEFAULT_ACCOUNT,
    DEFAULT_DATA_DIR,
    DEFAULT_DETAIL_BATCH_SIZE,
    DEFAULT_LISTING_CHUNK_ROWS,
    DEFAULT_LOCK_TIMEOUT_S,
    DEFAULT_LOOKBACK_HOURS,
    DEFAULT_REJECT_RATE_WARN,
    DEFAULT_START_DATE,
    DEFAULT_WAREHOUSE_SCHEMA,
    Settings,
)
from bulutfon_pipeline.warehouse import Warehouse

#: The ``ClientConfig`` fields that hold credentials.
_CREDENTIAL_FIELDS = ("access_token", "client_id", "client_secret", "refresh_token")


class BulutfonResource(dg.ConfigurableResource):
    """The Bulutfon REST API. Unset fields fall back to the BULUTFON_* environment."""

    api_url: str | None = Field(default=None, description="BULUTFON_API_URL")
    token_url: str | None = Field(default=None, description="BULUTFON_TOKEN_URL")
    cdr_list_path: str | None = Field(default=None, description="BULUTFON_CDR_LIST_PATH")
    cdr_detail_path: str | None = Field(default=None, description="BULUTFON_CDR_DETAIL_PATH")
    recording_path: str | None = Field(default=None, description="BULUTFON_RECORDING_PATH")
    access_token: str | None = Field(default=None, description="master token (EnvVar)")
    client_id: str | None = Field(default=None, description="OAuth client id (EnvVar)")
    client_secret: str | None = Field(default=None, description="OAuth client secret (EnvVar)")
    refresh_token: str | None = Field(default=None, description="OAuth refresh token (EnvVar)")
    api_key: str | None = Field(default=None, description="v2 API key (EnvVar)")
    data_dir: str | None = Field(default=None, description="BULUTFON_DATA_DIR (token file)")
    max_concurrency: int | None = Field(default=None, description="BULUTFON_MAX_CONCURRENCY")
    max_rps: float | None = Field(default=None, description="BULUTFON_MAX_RPS")

    def client_config(
        self, env: Mapping[str, str] | None = None, *, account: Account | None = None
    ) -> ClientConfig:
        """The client configuration: fields set here win over the environment. For an
        account of ``BULUTFON_ACCOUNTS_FILE``, its own credentials, URL, cap and token
        file win over both (the credentials set here are today's single account's).

        Raises:
            ConfigError: a value is malformed, or a variable the account names is unset
                (one line naming the account and the variable).
        """
        overrides = {
            name: value
            for name in (
                "api_url",
                "token_url",
                "cdr_list_path",
                "cdr_detail_path",
                "recording_path",
                "access_token",
                "client_id",
                "client_secret",
                "refresh_token",
                "api_key",
                "data_dir",
                "max_concurrency",
                "max_rps",
            )
            if (value := getattr(self, name)) is not None
        }
        env = os.environ if env is None else env
        if account is None or not account.from_file:
            return ClientConfig.from_env(env, **overrides)
        for name in _CREDENTIAL_FIELDS:
            overrides.pop(name, None)
        return account.client_config(env, **overrides)

    @contextmanager
    def client(self, account: Account | None = None) -> Iterator[BulutfonClient]:
        """An open client of ``account`` (default: today's single account), with its own
        flow control; raises ``ConfigError`` when no credentials are configured (one line:
        what to set, naming the account of a file)."""
        config = self.client_config(account=account)
        try:
            config.require_auth_mode()
        except ConfigError as exc:
            if account is None or not account.from_file:
                raise
            raise ConfigError(f"account {account.name!r}: {exc}") from None
        with BulutfonClient(config) as client:
            yield client


class WarehouseResource(DuckDBResource):
    """The warehouse: the DuckDB file (BULUTFON_DUCKDB_PATH), or the PostgreSQL database
    of BULUTFON_WAREHOUSE_URL when that is set."""

    url: str = Field(
        default="",
        description="BULUTFON_WAREHOUSE_URL (empty: the DuckDB file); read from the "
        "environment when the run starts, never stored, since it may hold a password",
    )
    schema_name: str = Field(
        default=DEFAULT_WAREHOUSE_SCHEMA, description="BULUTFON_WAREHOUSE_SCHEMA (PostgreSQL)"
    )
    lock_timeout_s: float = Field(
        default=DEFAULT_LOCK_TIMEOUT_S,
        description="BULUTFON_LOCK_TIMEOUT_S: how long a write waits for another writer",
    )

    def settings(self) -> Settings:
        """The warehouse's part of the settings, validated like the environment.

        Raises:
            SettingsError: a value given in run config is malformed.
        """
        return dataclasses.replace(
            Settings.from_env(
                {
                    "BULUTFON_WAREHOUSE_URL": self.url,
                    "BULUTFON_WAREHOUSE_SCHEMA": self.schema_name,
                    "BULUTFON_LOCK_TIMEOUT_S": repr(self.lock_timeout_s),
                }
            ),
            duckdb_path=Path(self.database),
        )

    def warehouse(self, account: str = DEFAULT_ACCOUNT) -> Warehouse:
        """The warehouse, with its schema and views in place, reading and writing the rows
        of ``account``."""
        warehouse = Warehouse.from_settings(self.settings(), account=account)
        warehouse.ensure_schema()
        return warehouse


class SettingsResource(dg.ConfigurableResource):
    """The pipeline's knobs (``settings.Settings``), shown and overridable in the launchpad.

    ``default_resources`` fills every field from the environment (BULUTFON_*) when the
    code location loads; a run's resource config wins over them.
    """

    data_dir: str = Field(default=DEFAULT_DATA_DIR, description="BULUTFON_DATA_DIR")
    lookback_hours: float = Field(
        default=DEFAULT_LOOKBACK_HOURS, description="BULUTFON_LOOKBACK_HOURS"
    )
    start_date: str = Field(
        default=DEFAULT_START_DATE.isoformat(), description="BULUTFON_START_DATE (YYYY-MM-DD)"
    )
    detail_batch_size: int = Field(
        default=DEFAULT_DETAIL_BATCH_SIZE, description="BULUTFON_DETAIL_BATCH_SIZE"
    )
    listing_chunk_rows: int = Field(
        default=DEFAULT_LISTING_CHUNK_ROWS, description="BULUTFON_LISTING_CHUNK_ROWS"
    )
    reject_rate_warn: float = Field(
        default=DEFAULT_REJECT_RATE_WARN, description="BULUTFON_REJECT_RATE_WARN"
    )
    mirror_recording_deletes: bool = Field(
        default=True, description="BULUTFON_MIRROR_RECORDING_DELETES"
    )
    analytics_path: str = Field(
        default="",
        description="BULUTFON_ANALYTICS_PATH (empty: <warehouse>.analytics.duckdb beside it)",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> SettingsResource:
        """The resource holding ``settings``' values."""
        return cls(
            data_dir=str(settings.data_dir),
            lookback_hours=settings.lookback_hours,
            start_date=settings.start_date.isoformat(),
            detail_batch_size=settings.detail_batch_size,
            listing_chunk_rows=settings.listing_chunk_rows,
            reject_rate_warn=settings.reject_rate_warn,
            mirror_recording_deletes=settings.mirror_recording_deletes,
            analytics_path=str(settings.analytics_path_setting or ""),
        )

    def get(self) -> Settings:
        """The validated settings of this resource's fields.

        The other ``Settings`` fields (the warehouse path, the lock timeout, the schedule's
        crons, the recordings switch) keep their defaults here: they belong to the other
        resources or to the code location, not to a run.

        Raises:
            SettingsError: a value given in run config is malformed.
        """
        # Validated through the same parser as the environment, so a bad launchpad value
        # fails the run with the same one-line message as a bad variable.
        return Settings.from_env(
            {
                "BULUTFON_DATA_DIR": self.data_dir,
                "BULUTFON_LOOKBACK_HOURS": repr(self.lookback_hours),
                "BULUTFON_START_DATE": self.start_date,
                "BULUTFON_DETAIL_BATCH_SIZE": str(self.detail_batch_size),
                "BULUTFON_LISTING_CHUNK_ROWS": str(self.listing_chunk_rows),
                "BULUTFON_REJECT_RATE_WARN": repr(self.reject_rate_warn),
                "BULUTFON_MIRROR_RECORDING_DELETES": str(self.mirror_recording_deletes).lower(),
                "BULUTFON_ANALYTICS_PATH": self.analytics_path,
            }
        )


def _secret(name: str) -> dg.EnvVar | None:
    # Only the *name* is read here; Dagster resolves the value when a run starts.
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources(settings: Settings | None = None) -> dict[str, object]:
    """The resources of the code location (the UI, the schedules, the sensors, the
    executors' workers); the CLI's in-process runs take :func:`built_resources`.

    Args:
        settings: the pipeline settings; read from the environment when omitted (a
            malformed environment falls back to the defaults, so the definitions load;
            the CLI validates first and reports the error).
    """
    settings = settings if settings is not None else Settings.from_env_or_defaults()
    # The name only: Dagster reads the URL (it may hold a password) when a run starts.
    url = dg.EnvVar("BULUTFON_WAREHOUSE_URL") if settings.warehouse_url else ""
    return _resources(settings, secret=_secret, url=url)


def built_resources(settings: Settings) -> dict[str, dg.ResourceDefinition]:
    """The resources of :func:`default_resources` for the CLI's in-process runs, built once
    (``ResourceDefinition.hardcoded_resource``). Dagster builds a Pythonic resource again
    for every run: it processes its config (the ``EnvVar``s, the defaults), builds its
    config schema and a new instance. In five pairs of 50-account syncs (100 runs each),
    built ones cost 2.6-8.7 CPU s less, of 29-49 (``benchmarks/ANALYSIS.md``, session 34).

    The values are those ``default_resources`` gives a run in this process:

    * no credential is set on ``bulutfon``: its client reads them from the environment
      when it opens (``BulutfonResource.client_config``), as the ``EnvVar`` did when the
      run started;
    * the warehouse URL, which may hold a password, is in the object in memory only: a
      built resource has no config, so no run, event or snapshot stores it (the security
      scan of ``DAGSTER_HOME`` checks it).
    """
    built = _resources(settings, secret=lambda name: None, url=settings.warehouse_url or "")
    return {
        name: dg.ResourceDefinition.hardcoded_resource(value, description=type(value).__doc__)
        for name, value in built.items()
    }


def _resources(
    settings: Settings, *, secret: Callable[[str], str | None], url: str
) -> dict[str, object]:
    return {
        "bulutfon": BulutfonResource(
            # One data folder for the token file, the recordings and the reports.
            data_dir=str(settings.data_dir),
            access_token=secret("BULUTFON_ACCESS_TOKEN"),
            client_id=secret("BULUTFON_CLIENT_ID"),
            client_secret=secret("BULUTFON_CLIENT_SECRET"),
            refresh_token=secret("BULUTFON_REFRESH_TOKEN"),
            api_key=secret("BULUTFON_API_KEY"),
        ),
        "warehouse": WarehouseResource(
            database=str(settings.duckdb_path),
            url=url,
            schema_name=settings.warehouse_schema,
            lock_timeout_s=settings.lock_timeout_s,
        ),
        "settings": SettingsResource.from_settings(settings),
    }
