"""The retry policy: Retry-After parsing, backoff bounds, which outcomes are retried."""

from __future__ import annotations

import email.utils
import random

import httpx
import pytest

from bulutfon_pipeline.api import APITimeoutError, ConnectError, InvalidResponseError
from bulutfon_pipeline.api.errors import (
    APIError,
    AuthError,
    ConfigError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)
from bulutfon_pipeline.api.retry import (
    Outcome,
    backoff_delay,
    final_error,
    parse_retry_after,
    retry_delay,
    should_retry,
    transport_error,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),  # delta-seconds
        ("0", 0.0),
        ("1.5", 1.5),  # not in the RFC, but harmless to accept
        ("-4", 0.0),  # nonsense negative: do not wait
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),  # HTTP-date
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # date in the past
        ("soon", None),  # unparseable
        ("", None),
        (None, None),  # absent
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_backoff_is_equal_jitter_within_bounds() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(20.0, 0.25 * 2**attempt)
        samples = [backoff_delay(attempt, 0.25, 20.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        # the jitter spreads over the whole upper half, not just near one end
        assert min(samples) < ceiling * 0.6
        assert max(samples) > ceiling * 0.9
    assert backoff_delay(1000, 0.25, 20.0, rng) <= 20.0  # no overflow on huge attempts


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    def delay(attempt: int, retry_after: float | None) -> float:
        return retry_delay(attempt, retry_after, base_s=0.25, max_s=20.0, retry_after_cap_s=60.0)

    assert delay(0, 5.0) == 5.0
    assert delay(0, 3600.0) == 60.0  # capped
    assert 0.0 <= delay(3, None) <= 2.0  # no header: backoff


def _invalid() -> InvalidResponseError:
    return InvalidResponseError("bad body", status=200)


@pytest.mark.parametrize(
    ("outcome", "attempt", "expected"),
    [
        (Outcome(status=200, value={}), 0, False),  # success
        (Outcome(status=429), 0, True),  # rate limited
        (Outcome(status=429), 3, False),  # ... but out of retries (max 3)
        (Outcome(status=500), 0, True),  # server fault
        (Outcome(status=503), 2, True),
        (Outcome(status=408), 0, True),  # server-side request timeout
        (Outcome(transport=APITimeoutError("t")), 0, True),  # timeout
        (Outcome(transport=ConnectError("c")), 0, True),  # refused / reset
        (Outcome(status=200, invalid=_invalid()), 0, True),  # cut body
        (Outcome(status=400), 0, False),  # other 4xx are final
        (Outcome(status=401), 0, False),
        (Outcome(status=404), 0, False),
        (Outcome(fatal=ConfigError("no creds")), 0, False),  # config problems are final
    ],
)
def test_should_retry(outcome: Outcome, attempt: int, expected: bool) -> None:
    assert should_retry(outcome, attempt, max_retries=3) is expected


@pytest.mark.parametrize(
    ("outcome", "error_type"),
    [
        (Outcome(status=401, url="https://a/x?access_token=zz1"), AuthError),
        (Outcome(status=403), AuthError),
        (Outcome(status=400, body=b'{"error": "Token expired"}'), AuthError),
        (Outcome(status=404), NotFoundError),
        (Outcome(status=429), RateLimitedError),
        (Outcome(status=502, body=b"<html>bad gateway</html>"), ServerError),
        (Outcome(status=422), APIError),
    ],
)
def test_final_error_types(outcome: Outcome, error_type: type[APIError]) -> None:
    error = final_error(outcome, attempts=4)
    assert type(error) is error_type
    assert isinstance(error, APIError)
    assert error.status == outcome.status
    assert "zz1" not in str(error) and "zz1" not in error.url


def test_final_error_keeps_body_excerpt() -> None:
    error = final_error(Outcome(status=502, body=b"<html>bad gateway</html>"), attempts=9)
    assert error.body_excerpt == "<html>bad gateway</html>"  # type: ignore[attr-defined]
    assert "after 9 attempts" in str(error)


def test_transport_errors_name_the_host_not_the_url() -> None:
    url = "https://api.bulutfon.com/cdr.json?access_token=leak-me-123"
    request = httpx.Request("GET", url)
    refused = transport_error(
        httpx.ConnectError("[Errno 111] Connection refused", request=request), url
    )
    assert isinstance(refused, ConnectError)
    assert str(refused) == (
        "Cannot reach https://api.bulutfon.com: connection refused — check BULUTFON_API_URL"
    )
    timeout = transport_error(httpx.ReadTimeout("timed out", request=request), url)
    assert isinstance(timeout, APITimeoutError)
    assert "leak-me-123" not in str(timeout)
