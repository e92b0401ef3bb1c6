"""The OAuth token endpoint: one form POST for an authorization code or a refresh token,
retried only when the answer means "not processed" (a spent refresh token cannot be sent
twice), and its answers turned into a :class:`Token` or an :class:`APIError`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from bulutfon_pipeline.api.config import ClientConfig
from bulutfon_pipeline.api.errors import (
    APIError,
    AuthError,
    BulutfonError,
    ServerError,
    body_excerpt,
)
from bulutfon_pipeline.api.models import Token
from bulutfon_pipeline.api.redact import register_secret
from bulutfon_pipeline.api.retry import backoff_delay, parse_retry_after, transport_error
from bulutfon_pipeline.api.tls import shared_ssl_context

__all__ = ["request_token"]

#: Token endpoint statuses that mean "not processed, try again"; a 500 is not retried
#: because the server may have rotated the refresh token before failing.
_TOKEN_RETRY_STATUSES = frozenset({429, 502, 503, 504})


def request_token(
    config: ClientConfig,
    fields: dict[str, str],
    *,
    transport: httpx.BaseTransport | None,
    sleep: Callable[[float], None],
) -> Token:
    """POST the form to the token URL, retrying only answers that mean "not processed".

    Args:
        config: the token URL, the OAuth client, timeouts and retry limits.
        fields: the grant (``grant_type`` and its ``code`` or ``refresh_token``).
        transport: an httpx transport for the token endpoint (tests pass a mock).
        sleep: used between retries.

    Returns:
        The new token (both of its strings registered as secrets).

    Raises:
        AuthError: the grant was rejected.
        ServerError: the endpoint kept failing (5xx/429) past the retry limit.
        TransportError: the endpoint is unreachable.
    """
    data = {
        "client_id": config.client_id or "",
        "client_secret": config.client_secret or "",
        "redirect_uri": config.redirect_uri,
        **fields,
    }
    headers = {"User-Agent": config.user_agent, "Accept": "application/json"}
    timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
    attempt = 0
    with httpx.Client(
        transport=transport, timeout=timeout, headers=headers, verify=shared_ssl_context()
    ) as http:
        while True:
            error: BulutfonError | None = None
            retry_after: float | None = None
            try:
                response = http.post(config.token_url, data=data)
            except httpx.HTTPError as exc:
                error = transport_error(exc, config.token_url, "BULUTFON_TOKEN_URL")
                # Only a failed connect surely left the refresh token unused.
                retryable = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            else:
                if response.status_code == 200:
                    token = _parse_token(response)
                    register_secret(token.access_token, token.refresh_token)
                    return token
                retryable = response.status_code in _TOKEN_RETRY_STATUSES
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                error = _token_error(response, fields["grant_type"])
            if not retryable or attempt >= config.max_retries:
                raise error
            delay = (
                min(retry_after, config.retry_after_cap_s)
                if retry_after is not None
                else backoff_delay(attempt, config.backoff_base_s, config.backoff_max_s)
            )
            attempt += 1
            sleep(delay)


def _parse_token(response: httpx.Response) -> Token:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AuthError(
            "Token endpoint answered 200 with a body that is not a JSON object",
            status=200,
            body_excerpt=body_excerpt(response.content),
        )
    return Token.from_response(data)


def _token_error(response: httpx.Response, grant_type: str) -> APIError:
    excerpt = body_excerpt(response.content)
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    if status >= 500 or status == 429:
        return ServerError(
            f"Token endpoint answered {status}: {excerpt}", status=status, body_excerpt=excerpt
        )
    what = "authorization code" if grant_type == "authorization_code" else "refresh token"
    hint = (
        "get a new code and run `bulutfon-pipeline auth` again"
        if grant_type == "authorization_code"
        else "run `bulutfon-pipeline auth` to authorize again"
    )
    reason = f" ({code})" if code else ""
    return AuthError(
        f"The token endpoint rejected the {what}{reason} with {status}: {hint}",
        status=status,
        body_excerpt=excerpt,
    )
