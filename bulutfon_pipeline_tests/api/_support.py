"""Helpers for the API client tests: fast configs and a recording no-op sleep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bulutfon_pipeline.api import ClientConfig

API = "https://api.test"
TOKEN_URL = "https://auth.test/oauth/token"


def fast_config(tmp_path: Path, **overrides: Any) -> ClientConfig:
    """A config for mock-transport tests: no real waiting, small retries."""
    values: dict[str, Any] = {
        "api_url": API,
        "token_url": TOKEN_URL,
        "data_dir": tmp_path,
        "backoff_base_s": 0.0,
        "max_retries": 3,
        "access_token": "master-tok-000001",
    }
    values.update(overrides)
    return ClientConfig(**values)


def oauth_config(tmp_path: Path, **overrides: Any) -> ClientConfig:
    values: dict[str, Any] = {
        "access_token": None,
        "client_id": "app-id",
        "client_secret": "client-secret-xyz",
        "refresh_token": "env-refresh-000",
    }
    values.update(overrides)
    return fast_config(tmp_path, **values)


class Sleeps:
    """A sleep that records the requested delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.delays.append(seconds)
