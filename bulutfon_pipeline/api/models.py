"""Frozen value objects at the API boundary, and the client's request counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulutfon_pipeline.api.errors import AuthError, BulutfonError

__all__ = [
    "ClientStats",
    "DetailResult",
    "ListingPage",
    "RecordingFile",
    "RecordingResult",
    "Token",
]


@dataclass(frozen=True)
class Token:
    """An OAuth 2 token pair as the token endpoint returns it.

    ``repr`` omits both tokens.
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float
    created_at: float
    scope: str = ""
    token_type: str = "bearer"

    @property
    def expires_at(self) -> float:
        """Unix time at which the access token expires: ``created_at + expires_in``."""
        return self.created_at + self.expires_in

    def is_expiring(self, now: float | None = None, margin_s: float = 0.0) -> bool:
        """Whether the token is expired, or will be within ``margin_s`` seconds.

        The margin is capped at half the token's lifetime: with tokens shorter than the
        margin every request would otherwise refresh (and rotate) the pair first.
        """
        now = time.time() if now is None else now
        return now + min(margin_s, self.expires_in / 2) >= self.expires_at

    @classmethod
    def from_response(cls, data: Mapping[str, Any], *, now: float | None = None) -> Token:
        """Build from a token endpoint JSON body.

        ``created_at`` defaults to ``now`` and ``expires_in`` to 7200 s (the documented
        lifetime) when the server leaves them out.

        Raises:
            AuthError: the body has no ``access_token``.
        """
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise AuthError("Token endpoint answered without an access_token", status=200)
        refresh = data.get("refresh_token")
        created = data.get("created_at")
        expires = data.get("expires_in")
        return cls(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_in=float(expires) if isinstance(expires, int | float) else 7200.0,
            created_at=float(created)
            if isinstance(created, int | float)
            else (time.time() if now is None else now),
            scope=str(data.get("scope") or ""),
            token_type=str(data.get("token_type") or "bearer"),
        )

    def to_json(self) -> dict[str, Any]:
        """The dict stored in the token file (the token endpoint's own shape)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
            "created_at": self.created_at,
            "scope": self.scope,
            "token_type": self.token_type,
        }


@dataclass(frozen=True)
class ListingPage:
    """One page of the CDR listing.

    Attributes:
        page: the 1-based page number requested.
        items: the raw listing items, minus uuids already seen earlier in this scan.
        total_pages: from the pagination object; ``None`` when the API sent none.
        total_count: from the pagination object; ``None`` when the API sent none.
        duplicates: items dropped because their uuid was already on an earlier page.
    """

    page: int
    items: list[dict[str, Any]]
    total_pages: int | None
    total_count: int | None
    duplicates: int = 0


@dataclass(frozen=True)
class DetailResult:
    """The outcome of fetching one CDR detail: ``payload`` (the inner ``cdr`` object) or
    ``error``, never both."""

    uuid: str
    payload: dict[str, Any] | None
    error: BulutfonError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RecordingFile:
    """A downloaded call recording."""

    path: Path
    content_type: str | None
    bytes: int
    sha256: str


@dataclass(frozen=True)
class RecordingResult:
    """One recording of a batch download: the file, or the error that stopped it."""

    uuid: str
    file: RecordingFile | None
    error: BulutfonError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_STAT_NAMES = ("requests", "retries", "rate_limited", "refreshes", "errors", "not_found")


class ClientStats:
    """Thread-safe counters shared by the sync and async halves of one client.

    * ``requests``: HTTP requests sent to the API (every attempt, not token calls);
    * ``retries``: attempts repeated after a retryable failure;
    * ``rate_limited``: 429 answers seen;
    * ``refreshes``: OAuth token refreshes performed;
    * ``errors``: failures surfaced to the caller (raised or reported per item), except
      404s, which are counted in ``not_found`` (a missing call is data, not a fault).
    * ``not_found``: 404 answers surfaced.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_STAT_NAMES, 0)

    def incr(self, name: str, n: int = 1) -> None:
        if name not in self._counts:
            raise KeyError(name)
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    @property
    def requests(self) -> int:
        return self.get("requests")

    @property
    def retries(self) -> int:
        return self.get("retries")

    @property
    def rate_limited(self) -> int:
        return self.get("rate_limited")

    @property
    def refreshes(self) -> int:
        return self.get("refreshes")

    @property
    def errors(self) -> int:
        return self.get("errors")

    @property
    def not_found(self) -> int:
        return self.get("not_found")

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"ClientStats({self.as_dict()})"
