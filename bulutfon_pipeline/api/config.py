"""Client configuration: one frozen dataclass, read from ``BULUTFON_*`` environment variables
(defaults: :mod:`bulutfon_pipeline.settings`). Secrets are kept out of ``repr``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
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

__all__ = ["ENV_VARS", "ApiVersion", "AuthMode", "ClientConfig", "default_user_agent"]


AuthMode = Literal["master", "oauth", "apikey"]
ApiVersion = Literal["v1", "v2"]

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
    # API v2 (README "API v2"): everything but the version and the key is inferred.
    "api_version": "BULUTFON_API_VERSION",
    "api_key": "BULUTFON_API_KEY",
    "v2_list_path": "BULUTFON_V2_CDR_LIST_PATH",
    "v2_detail_path": "BULUTFON_V2_CDR_DETAIL_PATH",
    "v2_auth": "BULUTFON_V2_AUTH",
    "v2_key_name": "BULUTFON_V2_KEY_NAME",
    "v2_page_param": "BULUTFON_V2_PAGE_PARAM",
    "v2_limit_param": "BULUTFON_V2_LIMIT_PARAM",
    "v2_data_key": "BULUTFON_V2_DATA_KEY",
    "v2_pagination_key": "BULUTFON_V2_PAGINATION_KEY",
    "v2_time_field": "BULUTFON_V2_TIME_FIELD",
    "v2_time_op": "BULUTFON_V2_TIME_OP",
    "v2_field_map": "BULUTFON_V2_FIELD_MAP",
}

_NO_CREDENTIALS = (
    "No Bulutfon credentials: set BULUTFON_ACCESS_TOKEN, or BULUTFON_CLIENT_ID, "
    "BULUTFON_CLIENT_SECRET and BULUTFON_REFRESH_TOKEN (see .env.example)"
)
#: An accounts file's OAuth client without a refresh token (its error line names it).
NO_ACCOUNT_REFRESH_TOKEN = (
    "No Bulutfon refresh token: name one with refresh_token_env in BULUTFON_ACCOUNTS_FILE, "
    "or run `bulutfon-pipeline auth --account NAME --code CODE`"
)
_NO_API_KEY = (
    "No Bulutfon API key: set BULUTFON_API_KEY (BULUTFON_API_VERSION=v2; see .env.example)"
)
_V1_TOKEN_ON_V2 = (
    "BULUTFON_API_VERSION=v2 needs an API key in BULUTFON_API_KEY: a v1 token "
    "(BULUTFON_ACCESS_TOKEN or OAuth) does not work on v2"
)
_V2_KEY_ON_V1 = (
    "BULUTFON_API_KEY is a v2 API key and does not work on v1: set BULUTFON_API_VERSION=v2, "
    "or v1 credentials (BULUTFON_ACCESS_TOKEN, or the OAuth client; see .env.example)"
)


@functools.cache
def default_user_agent() -> str:
    """The User-Agent (the API once rejected requests without one); made once per process."""
    try:
        version = importlib.metadata.version("bulutfon_pipeline")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        version = "0.0.0"
    # No project URL: it has none yet, and a made-up one would mislead the API's operator.
    return f"bulutfon-pipeline/{version} (python-httpx/{httpx.__version__})"


def _name(field_name: str) -> str:
    return ENV_VARS.get(field_name, field_name)


@dataclass(frozen=True)
class ClientConfig:
    """Everything the API client needs. Build it with :meth:`from_env` or directly.

    Secrets (``access_token``, ``client_secret``, ``refresh_token``, ``api_key``) are
    excluded from ``repr``. Invalid values raise :class:`ConfigError` naming the variable.

    ``api_version="v2"`` selects the v2 API: the ``v2_*`` fields name its paths,
    parameters and fields (all but ``/v2/cdr/list`` and the date path are inferred), and
    ``api_key`` authenticates instead of a token.
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
    api_version: ApiVersion = settings.DEFAULT_API_VERSION  # type: ignore[assignment]
    api_key: str | None = field(default=None, repr=False)
    #: What to check when the API rejects the credentials (an account's variables), and
    #: what set ``api_url``, named when it cannot be reached (an account's ``api_url``).
    credentials_hint: str | None = None
    api_url_hint: str = "BULUTFON_API_URL"
    v2_list_path: str = settings.DEFAULT_V2_LIST_PATH
    v2_detail_path: str = settings.DEFAULT_V2_DETAIL_PATH
    v2_auth: Literal["header", "query"] = settings.DEFAULT_V2_AUTH  # type: ignore[assignment]
    v2_key_name: str = settings.DEFAULT_V2_KEY_NAME
    v2_page_param: str = settings.DEFAULT_V2_PAGE_PARAM
    v2_limit_param: str = settings.DEFAULT_V2_LIMIT_PARAM
    v2_data_key: str = settings.DEFAULT_V2_DATA_KEY
    v2_pagination_key: str = settings.DEFAULT_V2_PAGINATION_KEY
    #: The listing field the incremental scan filters on ("" = no filter: page back).
    v2_time_field: str = settings.DEFAULT_V2_TIME_FIELD
    v2_time_op: Literal["gt", "ge"] = settings.DEFAULT_V2_TIME_OP  # type: ignore[assignment]
    #: v2 field name -> the v1 name the normaliser reads, as "a=b,c=d" or pairs.
    v2_field_map: tuple[tuple[str, str], ...] | str = settings.DEFAULT_V2_FIELD_MAP
    #: The token file, when not the shared ``<data_dir>/bulutfon_token.json`` (a PBX
    #: account of ``BULUTFON_ACCOUNTS_FILE`` keeps its own, ``accounts.Account.token_file``).
    token_path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, Path):  # so `ClientConfig(data_dir="x")` works
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
        for name in ("timeout_s", "connect_timeout_s", "retry_after_cap_s", "backoff_max_s"):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("backoff_base_s", "token_refresh_margin_s"):
            _check_float(name, getattr(self, name), positive=False)
        if self.max_rps is not None:
            _check_float("max_rps", self.max_rps, positive=True)
        if not self.user_agent or not self.user_agent.strip():
            raise ConfigError(f"{_name('user_agent')} must not be empty")
        self._check_v2()

    def _check_v2(self) -> None:
        _choice("api_version", self.api_version, ("v1", "v2"))
        _choice("v2_auth", self.v2_auth, ("header", "query"))
        _choice("v2_time_op", self.v2_time_op, ("gt", "ge"))
        for name in ("v2_list_path", "v2_detail_path"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/"):
                raise ConfigError(f"{_name(name)} must be a path starting with '/', got {value!r}")
        for placeholder in ("{uuid}", "{yyyy}", "{mm}", "{dd}"):
            if placeholder not in self.v2_detail_path:
                raise ConfigError(
                    f"{_name('v2_detail_path')} must contain the placeholder '{placeholder}'"
                )
        for name in (
            "v2_key_name",
            "v2_page_param",
            "v2_limit_param",
            "v2_data_key",
            "v2_pagination_key",
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{_name(name)} must not be empty")
        object.__setattr__(self, "v2_field_map", _field_map(self.v2_field_map))
        if not isinstance(self.v2_time_field, str):
            raise ConfigError(f"{_name('v2_time_field')} must be a field name or 'none'")
        if self.v2_time_field.strip().lower() in ("", "none"):  # no filter: page back
            object.__setattr__(self, "v2_time_field", "")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Read ``BULUTFON_*`` variables (an empty one counts as unset); keyword overrides
        (field names) win over them.

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
            "api_version": lambda _n, v: v.lower(),
            "v2_auth": lambda _n, v: v.lower(),
            "v2_time_op": lambda _n, v: v.lower(),
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
        refresh token (from the environment or the token file), else ``None``; on v2,
        ``"apikey"`` with an API key, else ``None`` (v1 tokens do not work there)."""
        if self.api_version == "v2":
            return "apikey" if self.api_key else None
        if self.access_token:
            return "master"
        if self.has_oauth_client and (self.refresh_token or self.token_file.exists()):
            return "oauth"
        return None

    def require_auth_mode(self) -> AuthMode:
        """The auth mode, or :class:`ConfigError` telling the user what to set."""
        mode = self.auth_mode
        if mode is not None:
            return mode
        if self.api_version == "v2":
            has_v1 = self.access_token or self.has_oauth_client
            raise ConfigError(_V1_TOKEN_ON_V2 if has_v1 else _NO_API_KEY)
        if self.has_oauth_client and self.credentials_hint:  # an accounts file's client
            raise ConfigError(NO_ACCOUNT_REFRESH_TOKEN)
        raise ConfigError(_V2_KEY_ON_V1 if self.api_key else _NO_CREDENTIALS)

    def secrets(self) -> tuple[str, ...]:
        """The secret strings of this config, for redaction."""
        values = (self.access_token, self.client_secret, self.refresh_token, self.api_key)
        return tuple(s for s in values if s)

    @property
    def v2_renames(self) -> tuple[tuple[str, str], ...]:
        """``v2_field_map`` as (v2 name, v1 name) pairs."""
        return _field_map(self.v2_field_map)

    @property
    def is_v2(self) -> bool:
        return self.api_version == "v2"

    def detail_url(self, uuid: str, call_date: dt.date | None = None) -> str:
        """The detail's URL; v2 puts the call's local date in the path.

        Raises:
            ValueError: v2 without ``call_date``.
        """
        if not self.is_v2:
            return self.api_url + self.cdr_detail_path.format(uuid=_quote(uuid))
        if call_date is None:
            raise ValueError("a v2 call detail needs the call's local date")
        path = self.v2_detail_path.format(
            uuid=_quote(uuid),
            yyyy=f"{call_date:%Y}",
            mm=f"{call_date:%m}",
            dd=f"{call_date:%d}",
        )
        return self.api_url + path

    def recording_url(self, uuid: str) -> str:
        return self.api_url + self.recording_path.format(uuid=_quote(uuid))

    @property
    def list_url(self) -> str:
        return self.api_url + (self.v2_list_path if self.is_v2 else self.cdr_list_path)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{_name(name)} must be one of {', '.join(allowed)}, got {value!r}")


def _field_map(value: object) -> tuple[tuple[str, str], ...]:
    """``"a=b,c=d"`` (or pairs) -> ``(("a", "b"), ("c", "d"))``."""
    bad = ConfigError(f"{_name('v2_field_map')} must be 'v2name=v1name,...', got {value!r}")
    if isinstance(value, str):
        entries: list[Any] = [entry.split("=", 1) for entry in value.split(",") if entry.strip()]
    elif isinstance(value, tuple):
        entries = list(value)
    else:
        raise bad
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        if len(entry) != 2 or not all(isinstance(part, str) and part.strip() for part in entry):
            raise bad
        pairs.append((entry[0].strip(), entry[1].strip()))
    return tuple(pairs)


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
