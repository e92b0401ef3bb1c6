"""Client configuration: one frozen dataclass, read from ``BULUTFON_*`` environment variables.

Defaults come from :mod:`bulutfon_pipeline.settings`. Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from bulutfon_pipeline import settings
from bulutfon_pipeline.api.errors import ConfigError

__all__ = ["ENV_VARS", "AuthMode", "ClientConfig", "default_user_agent"]


AuthMode = Literal["master", "oauth"]

#: field name -> environment variable.
ENV_VARS: dict[str, str] = {
    "api_url": "BULUTFON_API_URL",
    "token_url": "BULUTFON_TOKEN_URL",
    "cdr_list_path": "BULUTFON_CDR_LIST_PATH",
    "cdr_detail_path": "BULUTFON_CDR_DETAIL_PATH",
    "recording_path": "BULUTFON_RECORDING_PATH",
    "access_token": "BULUTFON_ACCESS_TOKEN",
    "client_id": "BULUTFON_CLIENT_ID",
    "client_secret": "BULUTFON_CLIENT_SECRET",
    "refresh_token": "BULUTFON_REFRESH_TOKEN",
    "redirect_uri": "BULUTFON_REDIRECT_URI",
    "data_dir": "BULUTFON_DATA_DIR",
    "timeout_s": "BULUTFON_TIMEOUT_S",
    "connect_timeout_s": "BULUTFON_CONNECT_TIMEOUT_S",
    "page_size": "BULUTFON_PAGE_SIZE",
    "max_concurrency": "BULUTFON_MAX_CONCURRENCY",
    "max_retries": "BULUTFON_MAX_RETRIES",
    "max_rps": "BULUTFON_MAX_RPS",
    "retry_after_cap_s": "BULUTFON_RETRY_AFTER_CAP_S",
    "user_agent": "BULUTFON_USER_AGENT",
}

_NO_CREDENTIALS = (
    "No Bulutfon credentials: set BULUTFON_ACCESS_TOKEN, or BULUTFON_CLIENT_ID, "
    "BULUTFON_CLIENT_SECRET and BULUTFON_REFRESH_TOKEN (see .env.example)"
)


def default_user_agent() -> str:
    """``bulutfon-pipeline/<version> (+<project url>)``; the API once rejected requests
    without a User-Agent."""
    try:
        version = importlib.metadata.version("bulutfon_pipeline")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        version = "0.0.0"
    # No project URL: the project has no public address yet, and a made-up one would
    # mislead the API operator reading their logs.
    return f"bulutfon-pipeline/{version} (python-httpx/{httpx.__version__})"


def _name(field_name: str) -> str:
    return ENV_VARS.get(field_name, field_name)


@dataclass(frozen=True)
class ClientConfig:
    """Everything the API client needs. Build it with :meth:`from_env` or directly.

    Secrets (``access_token``, ``client_secret``, ``refresh_token``) are excluded from
    ``repr``. Invalid values raise :class:`ConfigError` naming the variable.
    """

    api_url: str = settings.DEFAULT_API_URL
    token_url: str = settings.DEFAULT_TOKEN_URL
    cdr_list_path: str = settings.DEFAULT_CDR_LIST_PATH
    cdr_detail_path: str = settings.DEFAULT_CDR_DETAIL_PATH
    recording_path: str = settings.DEFAULT_RECORDING_PATH
    access_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    redirect_uri: str = settings.DEFAULT_REDIRECT_URI
    data_dir: Path = Path(settings.DEFAULT_DATA_DIR)
    timeout_s: float = settings.DEFAULT_TIMEOUT_S
    connect_timeout_s: float = settings.DEFAULT_CONNECT_TIMEOUT_S
    page_size: int = settings.DEFAULT_PAGE_SIZE
    max_concurrency: int = settings.DEFAULT_MAX_CONCURRENCY
    max_retries: int = settings.DEFAULT_MAX_RETRIES
    max_rps: float | None = settings.DEFAULT_MAX_RPS
    retry_after_cap_s: float = settings.DEFAULT_RETRY_AFTER_CAP_S
    backoff_base_s: float = settings.DEFAULT_BACKOFF_BASE_S
    backoff_max_s: float = settings.DEFAULT_BACKOFF_MAX_S
    token_refresh_margin_s: float = settings.TOKEN_REFRESH_MARGIN_S
    user_agent: str = field(default_factory=default_user_agent)
    #: The token file, when not the shared ``<data_dir>/bulutfon_token.json`` (a PBX
    #: account of ``BULUTFON_ACCOUNTS_FILE`` keeps its own, ``accounts.Account.token_file``).
    token_path: Path | None = None

    def __post_init__(self) -> None:
        # Coerce str -> Path so `ClientConfig(data_dir="x")` works too.
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        for name in ("api_url", "token_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise ConfigError(f"{_name(name)} must be an http(s) URL, got {value!r}")
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))
        for name in ("cdr_list_path", "cdr_detail_path", "recording_path"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/"):
                raise ConfigError(f"{_name(name)} must be a path starting with '/', got {value!r}")
        for name in ("cdr_detail_path", "recording_path"):
            if "{uuid}" not in getattr(self, name):
                raise ConfigError(f"{_name(name)} must contain the placeholder '{{uuid}}'")
        for name in ("page_size", "max_concurrency"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("max_retries", self.max_retries, minimum=0)
        for name in (
            "timeout_s",
            "connect_timeout_s",
            "retry_after_cap_s",
            "backoff_max_s",
        ):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("backoff_base_s", "token_refresh_margin_s"):
            _check_float(name, getattr(self, name), positive=False)
        if self.max_rps is not None:
            _check_float("max_rps", self.max_rps, positive=True)
        if not self.user_agent or not self.user_agent.strip():
            raise ConfigError(f"{_name('user_agent')} must not be empty")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Read ``BULUTFON_*`` variables; keyword overrides (field names) win over them.

        Empty variables count as unset.

        Args:
            env: the environment to read; ``os.environ`` by default.
            **overrides: field values that take precedence over ``env``.

        Raises:
            ConfigError: a value is not a number, is negative, or a field name is unknown.
        """
        env = os.environ if env is None else env
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"Unknown ClientConfig field(s): {', '.join(sorted(unknown))}")
        parsers: dict[str, Callable[[str, str], Any]] = {
            "data_dir": lambda _n, v: Path(v),
            "timeout_s": _parse_float,
            "connect_timeout_s": _parse_float,
            "page_size": _parse_int,
            "max_concurrency": _parse_int,
            "max_retries": _parse_int,
            "max_rps": _parse_float,
            "retry_after_cap_s": _parse_float,
        }
        values: dict[str, Any] = {}
        for name, var in ENV_VARS.items():
            raw = env.get(var)
            if raw is None or not raw.strip():
                continue
            raw = raw.strip()
            parse = parsers.get(name)
            values[name] = parse(var, raw) if parse else raw
        values.update(overrides)
        return cls(**values)

    # -- derived ------------------------------------------------------------------------

    @property
    def token_file(self) -> Path:
        """Where rotated OAuth tokens are stored: ``token_path`` when set, else
        ``<data_dir>/bulutfon_token.json``."""
        if self.token_path is not None:
            return self.token_path
        return self.data_dir / settings.TOKEN_FILE_NAME

    @property
    def has_oauth_client(self) -> bool:
        """Whether an OAuth app (client id and secret) is configured."""
        return bool(self.client_id and self.client_secret)

    @property
    def auth_mode(self) -> AuthMode | None:
        """``"master"`` with an access token, ``"oauth"`` with client id + secret and a
        refresh token (from the environment or the token file), else ``None``."""
        if self.access_token:
            return "master"
        if self.has_oauth_client and (self.refresh_token or self.token_file.exists()):
            return "oauth"
        return None

    def require_auth_mode(self) -> AuthMode:
        """The auth mode, or :class:`ConfigError` telling the user what to set."""
        mode = self.auth_mode
        if mode is None:
            raise ConfigError(_NO_CREDENTIALS)
        return mode

    def secrets(self) -> tuple[str, ...]:
        """The secret strings of this config, for redaction."""
        return tuple(s for s in (self.access_token, self.client_secret, self.refresh_token) if s)

    def detail_url(self, uuid: str) -> str:
        return self.api_url + self.cdr_detail_path.format(uuid=_quote(uuid))

    def recording_url(self, uuid: str) -> str:
        return self.api_url + self.recording_path.format(uuid=_quote(uuid))

    @property
    def list_url(self) -> str:
        return self.api_url + self.cdr_list_path


def _quote(uuid: str) -> str:
    return quote(str(uuid), safe="")


def _parse_int(var: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{var} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{var} must not be negative, got {value}")
    return value


def _parse_float(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{var} must be a finite number, got {raw!r}")
    if value < 0:
        raise ConfigError(f"{var} must not be negative, got {raw}")
    return value


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_name(name)} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{_name(name)} must be at least {minimum}, got {value}")


def _check_float(name: str, value: object, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{_name(name)} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        qualifier = "positive" if positive else "non-negative"
        raise ConfigError(f"{_name(name)} must be a {qualifier} number, got {value!r}")
