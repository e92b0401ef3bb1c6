"""One TLS context per process for every API client.

httpx builds a new ``ssl.SSLContext`` for each client (and ``httpx-aiohttp`` for each
transport), loading the whole CA bundle each time: about 20 ms of CPU. A sync of many
accounts makes several clients per account and run, and building their contexts was 4 %
of a 50-account sync's CPU (``benchmarks/ANALYSIS.md``). A context is safe to share
between threads and clients; this one verifies like httpx's default (certifi's bundle,
``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set).
"""

from __future__ import annotations

import ssl
import threading

import httpx

__all__ = ["shared_ssl_context"]

_context: ssl.SSLContext | None = None
_lock = threading.Lock()


def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once per process."""
    global _context
    with _lock:
        if _context is None:
            _context = httpx.create_ssl_context()
        return _context
