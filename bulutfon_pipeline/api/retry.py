"""Retry policy, pure and shared by the sync and async clients.

One attempt ends in an :class:`Outcome`; :func:`should_retry` decides whether to try
again, and :func:`retry_delay` how long to wait: ``Retry-After`` (seconds or an HTTP
date) capped by ``retry_after_cap_s``, else exponential backoff with equal jitter.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from bulutfon_pipeline.api.errors import (
    APIError,
    APITimeoutError,
    AuthError,
    BulutfonError,
    ConnectError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
    body_excerpt,
)
from bulutfon_pipeline.api.redact import redact

if TYPE_CHECKING:
    from bulutfon_pipeline.api.config import ClientConfig

__all__ = [
    "Outcome",
    "backoff_delay",
    "credentials_hint",
    "final_error",
    "parse_retry_after",
    "retry_delay",
    "should_retry",
    "transport_error",
]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Returns ``None`` when absent or unparseable; a date in the past gives ``0.0``.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN -> None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def backoff_delay(
    attempt: int, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Equal-jitter exponential backoff: uniform in ``[c/2, c]``, ``c = min(max_s,
    base_s * 2**attempt)``.

    ``attempt`` is 0 for the first retry. Half of each step is fixed so that the retry
    budget has a floor: with the defaults (0.25 s doubling to 20 s, 8 retries) a request
    keeps trying for at least 25.9 s, so an API that answers 503 for a few seconds never
    fails a request (full jitter could spend all 8 retries in under 5 s).
    """
    ceiling = min(max_s, base_s * (2 ** min(attempt, 62)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def retry_delay(
    attempt: int,
    retry_after: float | None,
    *,
    base_s: float,
    max_s: float,
    retry_after_cap_s: float,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry number ``attempt`` (0-based): the server's ``Retry-After``
    up to the cap when it sent one, else :func:`backoff_delay`."""
    if retry_after is not None:
        return min(retry_after, retry_after_cap_s)
    return backoff_delay(attempt, base_s, max_s, rng)


@dataclass
class Outcome:
    """The result of one attempt: a ``value``, or the facts needed to judge a failure."""

    value: Any = None
    status: int | None = None  # HTTP status; None when no response arrived
    body: bytes = b""
    url: str = ""
    retry_after: float | None = None
    transport: TransportError | None = None  # no response: timeout, refused, reset
    invalid: InvalidResponseError | None = None  # a 2xx whose body is unusable
    fatal: BulutfonError | None = None  # never retried (config/auth errors from the flow)

    @property
    def ok(self) -> bool:
        return (
            self.transport is None
            and self.invalid is None
            and self.fatal is None
            and self.status is not None
            and 200 <= self.status < 300
        )


def should_retry(outcome: Outcome, attempt: int, max_retries: int) -> bool:
    """Whether to repeat an idempotent GET after ``outcome`` (``attempt`` retries done)."""
    if outcome.ok:
        return False  # success
    if outcome.fatal is not None:
        return False  # bad config or rejected credentials: repeating cannot help
    if attempt >= max_retries:
        return False  # out of retries
    if outcome.transport is not None:
        return True  # timeout / refused / reset: nothing (usable) was answered
    if outcome.invalid is not None:
        return True  # a 2xx with a cut or garbled body: proxies do that, try again
    status = outcome.status or 0
    if status == 429:
        return True  # rate limited: wait (Retry-After or backoff) and try again
    if status == 408:
        return True  # request timeout reported by the server
    # 5xx is a server fault and GETs are idempotent: retry. Any other 4xx: the same
    # request will get the same answer, so do not.
    return status >= 500


def credentials_hint(config: ClientConfig) -> str | None:
    """What a rejected-credentials error tells to check: the account's variables, v2's
    key, or (``None``) the default's ``BULUTFON_ACCESS_TOKEN`` / OAuth hint."""
    if config.credentials_hint:
        return config.credentials_hint
    return "check BULUTFON_API_KEY" if config.is_v2 else None


def final_error(
    outcome: Outcome, attempts: int, credentials_hint: str | None = None
) -> BulutfonError:
    """The typed error to surface for a failed ``outcome`` after ``attempts`` attempts;
    ``credentials_hint`` says what to check when the credentials were rejected (default:
    the ``BULUTFON_*`` variables)."""
    if outcome.fatal is not None:
        return outcome.fatal
    after = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    if outcome.transport is not None:
        if attempts > 1:
            return type(outcome.transport)(
                f"{outcome.transport.message} ({after.strip()})", url=outcome.transport.url
            )
        return outcome.transport
    if outcome.invalid is not None:
        if attempts > 1:
            return InvalidResponseError(
                f"{outcome.invalid.message} ({after.strip()})",
                status=outcome.invalid.status,
                body_excerpt=outcome.invalid.body_excerpt,
                url=outcome.invalid.url,
            )
        return outcome.invalid
    status = outcome.status or 0
    excerpt = body_excerpt(outcome.body)
    url = redact(outcome.url)
    where = f"GET {url}"
    detail = f": {excerpt}" if excerpt else ""
    kwargs: dict[str, Any] = {"status": status, "body_excerpt": excerpt, "url": url}
    if status in (401, 403) or _says_token_expired(outcome.body):
        hint = credentials_hint or (
            "check BULUTFON_ACCESS_TOKEN, or run `bulutfon-pipeline auth` for OAuth"
        )
        return AuthError(
            f"Bulutfon rejected the credentials ({status}) for {where}{detail} — {hint}",
            **kwargs,
        )
    if status == 404:
        return NotFoundError(f"Not found (404): {where}", **kwargs)
    if status == 429:
        return RateLimitedError(f"Rate limited (429){after}: {where}{detail}", **kwargs)
    if status >= 500:
        return ServerError(f"Server error ({status}){after}: {where}{detail}", **kwargs)
    return APIError(f"Unexpected status {status}: {where}{detail}", **kwargs)


def _says_token_expired(body: bytes) -> bool:
    return b"token expired" in body[:2000].lower()


_ERRNO_RE = re.compile(r"\[Errno -?\d+\]\s*")


def _origin(url: str | httpx.URL) -> str:
    parsed = httpx.URL(str(url))
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def transport_error(
    exc: httpx.HTTPError, url: str | httpx.URL, variable: str = "BULUTFON_API_URL"
) -> TransportError:
    """Translate an httpx transport exception into our error, with redacted text.

    The message names the host and the variable to check, never the full URL.
    """
    origin = _origin(url)
    reason = _ERRNO_RE.sub("", str(exc)).strip() or type(exc).__name__
    reason = redact(reason[:1].lower() + reason[1:])
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.replace("Timeout", "").lower() or "request"
        return APITimeoutError(f"Timed out ({kind}) talking to {origin}", url=origin)
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"Cannot reach {origin}: {reason} — check {variable}", url=origin)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return ConnectError(f"Connection to {origin} broke: {reason}", url=origin)
    return TransportError(f"HTTP transport error talking to {origin}: {reason}", url=origin)
