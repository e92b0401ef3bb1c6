"""Errors raised by the Bulutfon API client.

Our exception hierarchy::

    BulutfonError
     ├── ConfigError                 bad or missing configuration (names the variable)
     ├── APIError                    the server answered, but not with what we wanted
     │    ├── AuthError              401/403, "Token expired" after a refresh, invalid_grant
     │    ├── RateLimitedError       429, still after every retry
     │    ├── NotFoundError          404
     │    ├── ServerError            5xx, still after every retry
     │    └── InvalidResponseError   a 200 whose body is not JSON / not the expected shape
     └── TransportError              no usable answer at all
          ├── APITimeoutError        connect/read/write/pool timeout, after every retry
          └── ConnectError           the host cannot be reached (names the host)

Every message and body excerpt is passed through :func:`bulutfon_pipeline.api.redact.redact`
before it is stored, so no token, client secret or auth code reaches a log or a traceback.
Errors are raised outside the ``except`` block that caught the httpx exception, so the
httpx exception (whose text holds the full URL) is not chained either.
"""

from __future__ import annotations

from bulutfon_pipeline import settings
from bulutfon_pipeline.api.redact import redact

__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthError",
    "BulutfonError",
    "ConfigError",
    "ConnectError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "body_excerpt",
]


def body_excerpt(body: bytes | str | None, limit: int = settings.ERROR_BODY_MAX_CHARS) -> str:
    """A redacted, truncated, single-line excerpt of a response body for messages."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = redact(" ".join(text.split()))
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


class BulutfonError(Exception):
    """Base class of every error this client raises."""

    def __init__(self, message: str) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message


class ConfigError(BulutfonError):
    """The configuration is missing or invalid; the message names the variable."""


class APIError(BulutfonError):
    """The API answered with an unexpected status or body.

    Attributes:
        status: the HTTP status code (200 for an unusable 200 body).
        body_excerpt: the start of the body, redacted and truncated.
        url: the request URL, redacted.
    """

    def __init__(self, message: str, *, status: int, body_excerpt: str = "", url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body_excerpt = redact(body_excerpt)
        self.url = redact(url)


class AuthError(APIError):
    """The credentials were rejected (401/403, expired after refresh, invalid_grant)."""


class RateLimitedError(APIError):
    """The API kept answering 429 Too Many Requests after every retry."""


class NotFoundError(APIError):
    """The resource does not exist (404)."""


class ServerError(APIError):
    """The API kept answering 5xx after every retry."""


class InvalidResponseError(APIError):
    """A 200 whose body is not valid JSON or not the expected shape, after every retry."""


class TransportError(BulutfonError):
    """No HTTP answer was received (network-level failure), after every retry."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = redact(url)


class APITimeoutError(TransportError):
    """The request timed out (connect, read, write or pool)."""


class ConnectError(TransportError):
    """The host could not be reached (refused, DNS failure, reset)."""
