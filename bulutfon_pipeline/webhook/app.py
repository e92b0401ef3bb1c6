"""The receiver's Starlette app: check the credentials, cap the size, parse, make the
event durable in the inbox, and only then answer 200.

Posts for the account ``default`` come to the configured path, those for an account of
``BULUTFON_ACCOUNTS_FILE`` to ``<path>/<account>`` (each PBX's panel gets its own URL:
the posts carry nothing that names the PBX).

Answers: 200 ``{"stored": true}`` (``false`` for a duplicate, which changes nothing);
401 without valid Basic credentials (when configured); 404 for an account the
deployment does not have; 413 above the size cap; 400 for a malformed post, with the
reason in the body and in the inbox's ``rejected_posts`` (404s too); 503 when the inbox
cannot commit (the event is not stored: the sender should retry).
Neither the ``Authorization`` header nor the password is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bulutfon_pipeline.settings import DEFAULT_ACCOUNT
from bulutfon_pipeline.webhook.config import WebhookConfig
from bulutfon_pipeline.webhook.events import MalformedEventError, parse_event
from bulutfon_pipeline.webhook.inbox import InboxWriter, StoreResult

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_REALM = 'Basic realm="bulutfon-webhook", charset="UTF-8"'


class _TooLargeError(Exception):
    pass


def _credentials_ok(header: str | None, user: bytes, password: bytes) -> bool:
    """Whether ``Authorization: Basic ...`` names ``user`` and ``password``.

    Both parts are compared with :func:`hmac.compare_digest`, always both, so the
    answer's timing tells nothing about either.
    """
    if not header or header[:6].lower() != "basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    given_user, sep, given_password = decoded.partition(b":")
    user_ok = hmac.compare_digest(given_user, user)
    password_ok = hmac.compare_digest(given_password, password)
    return bool(sep) and user_ok & password_ok


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _TooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: WebhookConfig, writer: InboxWriter) -> Starlette:
    """The receiver: ``POST config.path`` (the account ``default``) and ``POST
    config.path/<account>`` take events, ``GET /healthz`` says it is up."""
    known = set(config.accounts)
    user = (config.user or "").encode()
    password = (config.password or "").encode()

    async def commit(submit: Any) -> list[StoreResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[StoreResult]] = loop.create_future()

        def done(result: list[StoreResult] | BaseException) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        submit(done)
        return await future

    async def record_refused(
        status: int, reason: str, encoding: str | None, body: bytes | None
    ) -> None:
        log.warning("webhook post refused (%d): %s", status, reason)
        # A failure to record is logged by the writer; the answer stays the same.
        with contextlib.suppress(Exception):
            await commit(
                lambda done: writer.submit_rejected(
                    done, status=status, reason=reason, encoding=encoding, body=body
                )
            )

    async def receive(request: Request) -> Response:
        if config.requires_auth and not _credentials_ok(
            request.headers.get("authorization"), user, password
        ):
            client = request.client.host if request.client else "?"
            log.info("webhook post without valid credentials from %s", client)
            return PlainTextResponse(
                "unauthorized\n", status_code=401, headers={"WWW-Authenticate": _REALM}
            )
        content_type = request.headers.get("content-type")
        account = request.path_params.get("account", DEFAULT_ACCOUNT)
        if account not in known:
            reason = _unknown_account(config, account)
            await record_refused(404, reason, content_type, None)
            return JSONResponse({"error": reason}, status_code=404)
        try:
            body = await _read_capped(request, config.max_body_bytes)
        except _TooLargeError:
            reason = f"body larger than {config.max_body_bytes} bytes"
            await record_refused(413, reason, content_type, None)
            return JSONResponse({"error": reason}, status_code=413)
        try:
            event = parse_event(body, content_type)
        except MalformedEventError as error:
            await record_refused(400, str(error), content_type, body)
            return JSONResponse({"error": str(error)}, status_code=400)
        event = dataclasses.replace(event, account=account)
        try:
            (stored,) = await commit(lambda done: writer.submit(event, done))
        except Exception:
            return JSONResponse({"error": "the inbox could not store the event"}, 503)
        return JSONResponse({"stored": stored.new})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(
        routes=[
            Route(config.path, receive, methods=["POST"]),
            Route(config.path.rstrip("/") + "/{account}", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _unknown_account(config: WebhookConfig, account: str) -> str:
    """Why a post for ``account`` is refused: one line saying where to post instead."""
    where = ", ".join(
        config.path if name == DEFAULT_ACCOUNT else f"{config.path.rstrip('/')}/{name}"
        for name in config.accounts
    )
    return f"this deployment has no account {account[:64]!r}: post to {where}"[:500]


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the client went away; the event is stored all the same
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
