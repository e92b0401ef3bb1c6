"""redact() and the logging filter."""

from __future__ import annotations

import logging

import pytest

from bulutfon_pipeline.api import install_log_redaction, redact, register_secret
from bulutfon_pipeline.api.errors import AuthError, body_excerpt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # query string, first and middle parameter
        (
            "GET https://api.x/cdr.json?access_token=abc123&page=2",
            "GET https://api.x/cdr.json?access_token=***&page=2",
        ),
        ("/cdr.json?page=2&access_token=abc123", "/cdr.json?page=2&access_token=***"),
        # form body of a refresh
        (
            "grant_type=refresh_token&refresh_token=r1&client_secret=s1&client_id=id",
            "grant_type=refresh_token&refresh_token=***&client_secret=***&client_id=id",
        ),
        # authorization code, but not an unrelated *_code parameter
        ("code=xyz&error_code=42", "code=***&error_code=42"),
        # JSON bodies (double-quoted) and Python dict reprs (single-quoted)
        (
            '{"access_token": "t1", "expires_in": 7200}',
            '{"access_token": "***", "expires_in": 7200}',
        ),
        ("{'refresh_token': 'r2'}", "{'refresh_token': '***'}"),
        # the v2 API key in a query string and in a JSON body; not a *_apikey parameter
        (
            "GET https://api.x/v2/cdr/list?page=1&apikey=k-123&limit=5",
            "GET https://api.x/v2/cdr/list?page=1&apikey=***&limit=5",
        ),
        ('{"apikey": "k-123"}', '{"apikey": "***"}'),
        ("old_apikey=1", "old_apikey=1"),
        # nothing to hide
        (
            "HTTP Request: GET https://api.x/cdr.json?page=1",
            "HTTP Request: GET https://api.x/cdr.json?page=1",
        ),
        ("", ""),
    ],
)
def test_redact_parameters(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("s3cr3t-value-A", None, "")
    assert redact("Bearer s3cr3t-value-A in a header") == "Bearer *** in a header"
    assert redact("one-off xyzzy-123", extra_secrets=["xyzzy-123"]) == "one-off ***"


def test_short_strings_are_not_registered() -> None:
    register_secret("abc")  # too short to be a real secret; masking it would mangle text
    assert redact("abc def") == "abc def"


def test_errors_and_excerpts_are_redacted() -> None:
    register_secret("tok-ABCDEF-999")
    error = AuthError(
        "failed GET /x?access_token=tok-ABCDEF-999", status=401, body_excerpt="tok-ABCDEF-999"
    )
    assert "tok-ABCDEF-999" not in str(error)
    assert error.body_excerpt == "***"
    assert body_excerpt("x" * 1000, limit=10) == "x" * 10 + "…"
    assert body_excerpt(b"<html>\n  <b>502</b>\n</html>") == "<html> <b>502</b> </html>"


def test_log_filter_on_httpx_and_httpcore(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("logged-secret-42")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").info("HTTP Request: %s %s", "GET", "https://a/?access_token=zzz999")
    logging.getLogger("httpcore.http11").debug("headers %r", {"x": "logged-secret-42"})
    text = caplog.text + " ".join(r.getMessage() for r in caplog.records)
    assert "zzz999" not in text
    assert "logged-secret-42" not in text
    assert "access_token=***" in text
