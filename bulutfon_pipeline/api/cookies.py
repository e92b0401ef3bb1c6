"""The API clients' cookie store: httpx's, looking only at responses that set a cookie.

httpx looks for cookies in every response, building urllib's request and response
adapters each time (``http.cookiejar`` needs them) even when the response sets none: 7 %
of a one-account sync's CPU, most of it in the detail fan-out (``benchmarks/ANALYSIS.md``,
session 25). Bulutfon's API sets no cookie we know of; a response that does (a load
balancer's affinity cookie) is stored and sent back exactly as httpx would.
"""

from __future__ import annotations

import httpx

__all__ = ["keep_set_cookies_only"]


class _SetCookieOnly(httpx.Cookies):
    """``httpx.Cookies`` that skips the responses without ``Set-Cookie``/``Set-Cookie2``."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


def keep_set_cookies_only(client: httpx.Client | httpx.AsyncClient) -> None:
    """Give ``client`` the cookie store above, with the cookies it holds. httpx's public
    ``cookies`` setter would copy them into a plain store, so this sets the store httpx
    keeps; if a later httpx keeps it elsewhere, the client keeps its own."""
    held = getattr(client, "_cookies", None)
    if isinstance(held, httpx.Cookies) and not isinstance(held, _SetCookieOnly):
        client._cookies = _SetCookieOnly(held)
