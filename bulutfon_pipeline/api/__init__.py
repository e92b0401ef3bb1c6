"""Plain-Python client for the Bulutfon cloud-PBX API (no dagster here).

>>> from bulutfon_pipeline.api import BulutfonClient, ClientConfig
>>> with BulutfonClient(ClientConfig.from_env()) as client:  # doctest: +SKIP
...     for page in client.iter_listing_pages():
...         for result in client.fetch_details(item["uuid"] for item in page.items):
...             ...
"""

from bulutfon_pipeline.api.async_client import AsyncBulutfonClient
from bulutfon_pipeline.api.auth import (
    BulutfonAuth,
    TokenManager,
    exchange_code,
    force_refresh,
)
from bulutfon_pipeline.api.client import BulutfonClient
from bulutfon_pipeline.api.concurrency import AdaptiveLimiter, RatePacer
from bulutfon_pipeline.api.config import ClientConfig, default_user_agent
from bulutfon_pipeline.api.errors import (
    APIError,
    APITimeoutError,
    AuthError,
    BulutfonError,
    ConfigError,
    ConnectError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from bulutfon_pipeline.api.models import (
    ClientStats,
    DetailResult,
    ListingPage,
    RecordingFile,
    RecordingResult,
    Token,
)
from bulutfon_pipeline.api.recordings import detect_audio_format
from bulutfon_pipeline.api.redact import install_log_redaction, redact, register_secret
from bulutfon_pipeline.api.retry import backoff_delay, parse_retry_after
from bulutfon_pipeline.api.token_store import TokenStore

__all__ = [
    "APIError",
    "APITimeoutError",
    "AdaptiveLimiter",
    "AsyncBulutfonClient",
    "AuthError",
    "BulutfonAuth",
    "BulutfonClient",
    "BulutfonError",
    "ClientConfig",
    "ClientStats",
    "ConfigError",
    "ConnectError",
    "DetailResult",
    "InvalidResponseError",
    "ListingPage",
    "NotFoundError",
    "RateLimitedError",
    "RatePacer",
    "RecordingFile",
    "RecordingResult",
    "ServerError",
    "Token",
    "TokenManager",
    "TokenStore",
    "TransportError",
    "backoff_delay",
    "default_user_agent",
    "detect_audio_format",
    "exchange_code",
    "force_refresh",
    "install_log_redaction",
    "parse_retry_after",
    "redact",
    "register_secret",
]
