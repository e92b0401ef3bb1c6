"""Keep secrets out of logs, exception messages and reprs.

httpx logs ``HTTP Request: GET <full url>`` at INFO on the ``httpx`` logger and puts the
URL in its exception messages; with a master token the URL carries ``access_token=...``.
:func:`redact` masks secret-bearing parameters and every secret string registered with
:func:`register_secret`; :func:`install_log_redaction` puts a :class:`RedactingFilter` on
the httpx/httpcore loggers and ours.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

__all__ = [
    "MASK",
    "REDACTED_LOGGERS",
    "RedactingFilter",
    "install_log_redaction",
    "redact",
    "register_secret",
]

MASK = "***"

#: Parameters whose value is always a secret, in a query string, form body or JSON.
_SECRET_KEYS = ("access_token", "refresh_token", "client_secret", "code", "apikey")
_KEYS = "|".join(_SECRET_KEYS)
# key=value in a URL or form body. The lookbehind keeps `error_code=` or `zipcode=` intact.
_QUERY_RE = re.compile(rf"(?<![A-Za-z0-9_])({_KEYS})=([^&\s'\"<>#,;)\]]+)")
# "key": "value" in JSON (also the single-quoted Python repr of a dict).
_JSON_RE = re.compile(rf"""(["']({_KEYS})["']\s*:\s*["'])([^"']+)(["'])""")

#: Loggers that may see a URL or a body. Filters on a logger do not apply to records that
#: propagate from its children, so httpcore's child loggers are listed one by one.
REDACTED_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "bulutfon_pipeline",
    "bulutfon_pipeline.api",
    "bulutfon_pipeline.api.auth",
    "bulutfon_pipeline.api.client",
    "bulutfon_pipeline.api.async_client",
    "bulutfon_pipeline.api.core",
)

# Shorter strings are not treated as secrets: masking them would mangle ordinary text.
_MIN_SECRET_LEN = 6
_secrets: set[str] = set()
_secrets_sorted: tuple[str, ...] = ()
_lock = threading.Lock()


def register_secret(*values: str | None) -> None:
    """Remember secret strings (tokens, client secret, auth codes) to mask wherever seen."""
    global _secrets_sorted
    new = {v for v in values if v and len(v) >= _MIN_SECRET_LEN and v not in _secrets}
    if not new:
        return
    with _lock:
        _secrets.update(new)
        # Longest first, so a secret that contains another is masked whole.
        _secrets_sorted = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Mask secret parameters and every known secret string in ``text``.

    Args:
        text: any text: a URL, a log message, a response body.
        extra_secrets: more strings to mask in this call only.

    Returns:
        ``text`` with ``access_token=``, ``refresh_token=``, ``client_secret=`` and
        ``code=`` and ``apikey=`` values (query/form and JSON forms) and all registered secrets
        replaced by ``***``.
    """
    if not text:
        return text
    text = _QUERY_RE.sub(rf"\1={MASK}", text)
    text = _JSON_RE.sub(rf"\g<1>{MASK}\g<4>", text)
    for secret in (*_secrets_sorted, *extra_secrets):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message with :func:`redact`.

    The message is rendered (``msg % args``) first, because the secret is usually in an
    argument (httpx passes the URL as one); the record then carries the final text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = ()
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()
_installed: set[str] = set()


def install_log_redaction(extra_loggers: Iterable[str] = ()) -> None:
    """Install the redacting filter on httpx, httpcore (and children) and our loggers.

    Idempotent; safe to call from every client constructor.
    """
    names = set(REDACTED_LOGGERS) | set(extra_loggers)
    # Child loggers that already exist (e.g. created by another httpcore version).
    for existing in list(logging.root.manager.loggerDict):
        if existing.startswith(("httpx.", "httpcore.", "bulutfon_pipeline.")):
            names.add(existing)
    with _lock:
        for name in sorted(names - _installed):
            logging.getLogger(name).addFilter(_FILTER)
            _installed.add(name)
