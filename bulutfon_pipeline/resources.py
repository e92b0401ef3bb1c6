"""Dagster resources: the Bulutfon API client and the DuckDB warehouse.

Secrets come in through ``EnvVar`` (resolved at run time, never stored in run config);
every other value falls back to the environment, then to ``settings``. Nothing reads a
credential at import time, so the definitions load with no environment set and an asset
that needs credentials fails at run time with one clear line.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from bulutfon_pipeline.api import BulutfonClient, ClientConfig
from bulutfon_pipeline.api.errors import ConfigError
from bulutfon_pipeline.partitions import start_date_from_env
from bulutfon_pipeline.recordings import mirror_deletes_enabled
from bulutfon_pipeline.settings import (
    DEFAULT_DETAIL_BATCH_SIZE,
    DEFAULT_DUCKDB_PATH,
    DEFAULT_LISTING_CHUNK_ROWS,
    DEFAULT_LOOKBACK_HOURS,
)
from bulutfon_pipeline.warehouse import Warehouse

SECRET_VARIABLES = (
    "BULUTFON_ACCESS_TOKEN",
    "BULUTFON_CLIENT_ID",
    "BULUTFON_CLIENT_SECRET",
    "BULUTFON_REFRESH_TOKEN",
)


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
    data_dir: str | None = Field(default=None, description="BULUTFON_DATA_DIR (token file)")
    max_concurrency: int | None = Field(default=None, description="BULUTFON_MAX_CONCURRENCY")
    max_rps: float | None = Field(default=None, description="BULUTFON_MAX_RPS")

    def client_config(self, env: Mapping[str, str] | None = None) -> ClientConfig:
        """The client configuration: fields set here win over the environment.

        Raises:
            ConfigError: a value is malformed (one line naming the variable).
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
                "data_dir",
                "max_concurrency",
                "max_rps",
            )
            if (value := getattr(self, name)) is not None
        }
        return ClientConfig.from_env(os.environ if env is None else env, **overrides)

    @contextmanager
    def client(self) -> Iterator[BulutfonClient]:
        """An open client; raises ``ConfigError`` when no credentials are configured."""
        config = self.client_config()
        if config.auth_mode is None:
            raise ConfigError(
                "No Bulutfon credentials: set BULUTFON_ACCESS_TOKEN, or BULUTFON_CLIENT_ID, "
                "BULUTFON_CLIENT_SECRET and BULUTFON_REFRESH_TOKEN (see .env.example)"
            )
        with BulutfonClient(config) as client:
            yield client


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse file (BULUTFON_DUCKDB_PATH)."""

    def warehouse(self) -> Warehouse:
        """The warehouse, with its schema and views in place."""
        warehouse = Warehouse(self.database)
        warehouse.ensure_schema()
        return warehouse


@dataclass(frozen=True)
class LoadSettings:
    """Knobs of the incremental load, read from the environment at run time."""

    lookback: dt.timedelta
    start_date: dt.date
    detail_batch_size: int
    listing_chunk_rows: int = DEFAULT_LISTING_CHUNK_ROWS
    #: Delete our copy of a recording the source removed (BULUTFON_MIRROR_RECORDING_DELETES).
    mirror_recording_deletes: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LoadSettings:
        """Read BULUTFON_LOOKBACK_HOURS, BULUTFON_START_DATE, BULUTFON_DETAIL_BATCH_SIZE,
        BULUTFON_LISTING_CHUNK_ROWS, BULUTFON_MIRROR_RECORDING_DELETES.

        Raises:
            ConfigError: a value is malformed (one line naming the variable).
        """
        env = os.environ if env is None else env
        try:
            start_date = start_date_from_env(dict(env))
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return cls(
            lookback=dt.timedelta(
                hours=_positive_number(env, "BULUTFON_LOOKBACK_HOURS", DEFAULT_LOOKBACK_HOURS)
            ),
            start_date=start_date,
            detail_batch_size=int(
                _positive_number(env, "BULUTFON_DETAIL_BATCH_SIZE", DEFAULT_DETAIL_BATCH_SIZE)
            ),
            listing_chunk_rows=int(
                _positive_number(env, "BULUTFON_LISTING_CHUNK_ROWS", DEFAULT_LISTING_CHUNK_ROWS)
            ),
            mirror_recording_deletes=mirror_deletes_enabled(env),
        )


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def duckdb_path_from_env(env: Mapping[str, str] | None = None) -> str:
    """BULUTFON_DUCKDB_PATH, or data/bulutfon.duckdb."""
    env = os.environ if env is None else env
    return env.get("BULUTFON_DUCKDB_PATH", "").strip() or DEFAULT_DUCKDB_PATH


def _secret(name: str) -> dg.EnvVar | None:
    # Only the *name* is read here; Dagster resolves the value when a run starts.
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict[str, object]:
    """The resources every entry point (UI, schedule, CLI) uses."""
    return {
        "bulutfon": BulutfonResource(
            access_token=_secret("BULUTFON_ACCESS_TOKEN"),
            client_id=_secret("BULUTFON_CLIENT_ID"),
            client_secret=_secret("BULUTFON_CLIENT_SECRET"),
            refresh_token=_secret("BULUTFON_REFRESH_TOKEN"),
        ),
        "warehouse": WarehouseResource(database=str(Path(duckdb_path_from_env()))),
    }
