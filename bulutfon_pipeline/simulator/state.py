"""One account's mutable state: its dataset, the issued tokens, the per-token rate limits,
faults drawn per request and request statistics (thread-safe; the app reads it).
:mod:`.accounts` holds one per account and routes each request to its own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import secrets
import threading
import time
from typing import Any

from bulutfon_pipeline.simulator.dataset import Dataset, generate_dataset
from bulutfon_pipeline.simulator.directory import Directory
from bulutfon_pipeline.simulator.model import SimulatorConfig
from bulutfon_pipeline.simulator.stats import ENDPOINTS, RequestStats

__all__ = ["ENDPOINTS", "RUNTIME_KNOBS", "SimulatorState"]

#: Knobs that change generated data; updating them re-assigns faults or is rejected.
_FAULT_ASSIGNMENT_KNOBS = ("missing_detail_count", "malformed_count", "unknown_field_count")
_GENERATION_KNOBS = ("seed", "days", "calls_per_day", "end_date", "masked_share")
RUNTIME_KNOBS = tuple(
    f.name
    for f in dataclasses.fields(SimulatorConfig)
    if f.name not in (*_GENERATION_KNOBS, "master_token", "client_id", "client_secret", "api_key")
)


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float):
        self.tokens = tokens
        self.updated = updated


class SimulatorState:
    """Everything the server knows of one account: config, dataset, credentials, rate
    limits, stats.

    Thread-safe: the server's event loop thread and the test thread share it. Secrets are
    generated with :func:`secrets.token_hex` unless the config gives them, and never logged.
    ``lazy``: generate the dataset on first use instead of now (it is the same data).
    """

    def __init__(
        self, config: SimulatorConfig, dataset: Dataset | None = None, *, lazy: bool = False
    ):
        self.config = dataclasses.replace(config)
        self._lock = threading.RLock()
        self._dataset = dataset
        #: The PBX's directory (extensions, ring groups, DIDs): this account's own.
        self.directory = Directory(config.seed)
        if dataset is None and not lazy:
            self._dataset = generate_dataset(self.config)
        self.master_token = config.master_token or secrets.token_hex(32)
        self.api_key = config.api_key or secrets.token_hex(24)
        self.client_id = config.client_id or secrets.token_hex(16)
        self.client_secret = config.client_secret or secrets.token_hex(32)
        self._access: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self._refresh: set[str] = set()
        self._codes: set[str] = set()
        self._issued: list[str] = []  # every token and code ever handed out, for leak scans
        self._buckets: dict[str, _Bucket] = {}
        self._fault_rng = random.Random(config.fault_seed)
        self._stats = RequestStats()
        self.initial_refresh_token = self._new_refresh_token()
        self._outage_until = time.monotonic() + config.outage_s
        self._outage_left = config.outage_requests

    @property
    def dataset(self) -> Dataset:
        """The calls this account serves (generated here on first use when lazy)."""
        dataset = self._dataset
        if dataset is None:
            with self._lock:
                if self._dataset is None:
                    self._dataset = generate_dataset(self.config)
                dataset = self._dataset
        return dataset

    def now(self) -> dt.datetime:
        """The simulator's clock: ``config.clock`` when set, else the wall clock (UTC).
        The ``Date`` header of every API answer says it."""
        clock = self.config.clock
        return (
            dt.datetime.fromisoformat(clock).astimezone(dt.UTC)
            if clock
            else dt.datetime.now(dt.UTC)
        )

    @property
    def generated(self) -> bool:
        """Whether the dataset exists yet."""
        return self._dataset is not None

    # -- config ------------------------------------------------------------------------
    def update_config(self, **knobs: Any) -> SimulatorConfig:
        """Change runtime knobs; fault-count knobs re-pick the faulty calls."""
        unknown = set(knobs) - set(RUNTIME_KNOBS)
        if unknown:
            raise ValueError(f"not runtime knobs: {sorted(unknown)}; runtime: {RUNTIME_KNOBS}")
        with self._lock:
            if "recording_share" in knobs:
                # Generation reads the share; a later share only applies to later calls.
                _ = self.dataset
            new = dataclasses.replace(self.config, **knobs)
            if "fault_seed" in knobs:
                self._fault_rng = random.Random(new.fault_seed)
            if "rate_limit_rps" in knobs:
                self._buckets.clear()
            if "outage_s" in knobs:  # an outage starts when it is set
                self._outage_until = time.monotonic() + new.outage_s
            if "outage_requests" in knobs:
                self._outage_left = new.outage_requests
            self.config = new
            dataset = self._dataset
            if dataset is None:  # generated later from ``self.config``: the same result
                return new
            dataset.config = dataclasses.replace(dataset.config, **knobs)
            if any(k in knobs for k in _FAULT_ASSIGNMENT_KNOBS):
                dataset.assign_faults(
                    new.missing_detail_count, new.malformed_count, new.unknown_field_count
                )
            if "recording_share" in knobs:
                dataset.set_recording_share(new.recording_share)
            return new

    # -- credentials -------------------------------------------------------------------
    def _new_refresh_token(self) -> str:
        token = secrets.token_hex(32)
        with self._lock:
            self._refresh.add(token)
            self._issued.append(token)
        return token

    def issue_auth_code(self) -> str:
        code = secrets.token_hex(16)
        with self._lock:
            self._codes.add(code)
            self._issued.append(code)
        return code

    def issued_secrets(self) -> list[str]:
        """Every secret this simulator knows: master token, v2 API key, client secret, and
        each access token, refresh token and authorization code it ever issued (for leak
        scans)."""
        with self._lock:
            return [self.master_token, self.api_key, self.client_secret, *self._issued]

    def expire_tokens(self) -> int:
        """Make every issued access token expired now (the master token never expires)."""
        with self._lock:
            now = time.time()
            for token in self._access:
                self._access[token] = min(self._access[token], now - 1)
            return len(self._access)

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint's logic: (status, body)."""
        grant_type = form.get("grant_type")
        with self._lock:
            if form.get("client_id") != self.client_id or not secrets.compare_digest(
                form.get("client_secret", ""), self.client_secret
            ):
                return 401, {"error": "invalid_client"}
            if grant_type == "authorization_code":
                code = form.get("code", "")
                if code not in self._codes:
                    return 400, {"error": "invalid_grant"}
                self._codes.discard(code)
                refresh = None
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh not in self._refresh:
                    return 400, {"error": "invalid_grant"}
                if self.config.rotate_refresh_tokens:
                    self._refresh.discard(refresh)
            else:
                return 400, {"error": "unsupported_grant_type"}
            now = time.time()
            access = secrets.token_hex(32)
            self._access[access] = now + self.config.token_ttl_s
            self._issued.append(access)
            if refresh is None or self.config.rotate_refresh_tokens:
                refresh = self._new_refresh_token()
            return 200, {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": int(self.config.token_ttl_s),
                "refresh_token": refresh,
                "created_at": int(now),
                "scope": "cdr call_record",
            }

    def check_token(self, token: str | None) -> str:
        """``ok``, ``invalid`` or ``expired``."""
        if not token:
            return "invalid"
        if secrets.compare_digest(token, self.master_token):
            return "ok"
        with self._lock:
            expires = self._access.get(token)
        if expires is None:
            return "invalid"
        return "ok" if time.time() < expires else "expired"

    def check_key(self, key: str | None) -> str:
        """``ok`` or ``invalid``: a v2 API key (v1 tokens are not keys)."""
        return "ok" if key and secrets.compare_digest(key, self.api_key) else "invalid"

    def take(self, token: str) -> bool:
        """One request from ``token``'s bucket (capacity: one second of ``rate_limit_rps``)."""
        rps = self.config.rate_limit_rps
        if rps <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(token)
            if bucket is None:
                bucket = self._buckets[token] = _Bucket(max(1.0, rps), now)
            bucket.tokens = min(max(1.0, rps), bucket.tokens + (now - bucket.updated) * rps)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return True
            return False

    def in_outage(self) -> bool:
        """Whether this API request falls in an outage (``outage_s``/``outage_requests``)."""
        with self._lock:
            if self._outage_left > 0:
                self._outage_left -= 1
                return True
            return time.monotonic() < self._outage_until

    def roll(self) -> float:
        with self._lock:
            return self._fault_rng.random()

    # -- stats -------------------------------------------------------------------------
    def record(self, endpoint: str, status: int, call_uuid: str | None = None) -> None:
        self._stats.record(endpoint, status, call_uuid)

    def stats(self) -> dict[str, Any]:
        """``{endpoint: {status: count}}`` for every endpoint, plus ``detail_uuids`` and
        ``recording_uuids`` ({uuid: requests}) and ``total``."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()
