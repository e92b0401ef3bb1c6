"""The accounts one simulator serves, and the routing of each request to its own.

Each account is a :class:`.SimulatorState` of its own: its credentials (master token,
OAuth client and the tokens it issues), its dataset, its knobs (so its own
``rate_limit_rps`` and token buckets: one account's traffic never drains another's) and
its request statistics. An API request goes to the account whose master token or issued
access token it carries (a ``/v2/`` request: whose API key); the token endpoint, to the
account of its ``client_id``. A request no account recognizes is answered with the first
account's latency and outage and then the API's 401, and is counted only in the
server-wide statistics.

Account ``i`` (0-based, in the order given) is served ``config`` with ``seed + i``. The
first account keeps the config's credentials and is generated at once, so one account is
exactly the single-account simulator; the others get fresh random credentials and generate
their dataset on first use (a request, a ground-truth read or a change).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bulutfon_pipeline.simulator.model import SimulatorConfig
from bulutfon_pipeline.simulator.state import SimulatorState
from bulutfon_pipeline.simulator.stats import RequestStats

__all__ = ["Accounts", "account_config", "account_names"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def account_names(accounts: int | Sequence[str]) -> list[str]:
    """The names of ``accounts``: a count gives ``account-1`` … ``account-N``; names are
    kept as given (letters, digits, ``.``, ``_``, ``-``; unique).

    Raises:
        ValueError: no account, a bad or a repeated name.
    """
    if isinstance(accounts, bool | str):
        raise ValueError(f"accounts must be a count or a list of names, got {accounts!r}")
    if isinstance(accounts, int):
        if accounts < 1:
            raise ValueError(f"accounts must be at least 1, got {accounts}")
        return [f"account-{i}" for i in range(1, accounts + 1)]
    names = [str(name) for name in accounts]
    if not names:
        raise ValueError("accounts: give at least one name")
    bad = [name for name in names if not _NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"bad account names {bad}: use letters, digits, '.', '_' and '-'")
    if len(set(names)) != len(names):
        raise ValueError(f"account names repeat: {names}")
    return names


def account_config(config: SimulatorConfig, index: int) -> SimulatorConfig:
    """Account ``index``'s config: ``config`` with ``seed + index``; every account after
    the first gets its own random credentials instead of the config's."""
    if index == 0:
        return dataclasses.replace(config)
    return dataclasses.replace(
        config,
        seed=config.seed + index,
        master_token=None,
        api_key=None,
        client_id=None,
        client_secret=None,
    )


class Accounts:
    """The accounts of one server, by name, in order; thread-safe.

    ``Accounts.create(config, 3)`` builds them; ``accounts[name]`` is one account's state.
    """

    def __init__(self, states: Mapping[str, SimulatorState]):
        if not states:
            raise ValueError("a simulator serves at least one account")
        self._states = dict(states)
        self.first = next(iter(self._states.values()))
        self._lock = threading.Lock()
        self._by_master = {s.master_token: s for s in self._states.values()}
        self._by_client = {s.client_id: s for s in self._states.values()}
        self._by_key = {s.api_key: s for s in self._states.values()}
        if len(self._by_master) != len(self._states) or len(self._by_client) != len(self._states):
            raise ValueError("two accounts share a master token or a client id")
        self._by_access: dict[str, SimulatorState] = {}
        self._stats = RequestStats()

    @classmethod
    def create(cls, config: SimulatorConfig, accounts: int | Sequence[str] = 1) -> Accounts:
        """``accounts`` (a count or names) served from ``config`` (see the module doc)."""
        names = account_names(accounts)
        return cls({
            name: SimulatorState(account_config(config, i), lazy=i > 0)
            for i, name in enumerate(names)
        })  # fmt: skip

    # -- lookup ------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._states))

    def __getitem__(self, name: str) -> SimulatorState:
        try:
            return self._states[name]
        except KeyError:
            raise KeyError(f"no account {name!r}; accounts: {self.names}") from None

    def get(self, name: str | None) -> SimulatorState:
        """Account ``name``, or the first account when ``name`` is None."""
        return self.first if name is None else self[name]

    def states(self) -> list[SimulatorState]:
        return list(self._states.values())

    def route(self, token: str | None) -> SimulatorState | None:
        """The account whose master token or issued access token (even expired) is
        ``token``, or None."""
        if not token:
            return None
        state = self._by_master.get(token)
        if state is None:
            with self._lock:
                state = self._by_access.get(token)
        return state

    def route_key(self, key: str | None) -> SimulatorState | None:
        """The account whose v2 API key is ``key``, or None."""
        return self._by_key.get(key) if key else None

    # -- the token endpoint ------------------------------------------------------------
    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any], SimulatorState | None]:
        """(status, body, account) for a token request; the account of its ``client_id``
        grants it (see :meth:`SimulatorState.grant`)."""
        state = self._by_client.get(form.get("client_id", ""))
        if state is None:
            return 401, {"error": "invalid_client"}, None
        status, body = state.grant(form)
        if status == 200:
            with self._lock:
                self._by_access[body["access_token"]] = state
        return status, body, state

    # -- stats, knobs and secrets ------------------------------------------------------
    def record(
        self,
        endpoint: str,
        status: int,
        call_uuid: str | None = None,
        account: SimulatorState | None = None,
    ) -> None:
        """Count a request server-wide and, when it reached one, in its account."""
        self._stats.record(endpoint, status, call_uuid)
        if account is not None:
            account.record(endpoint, status, call_uuid)

    def stats(self) -> dict[str, Any]:
        """Server-wide statistics (every request, also those no account recognized), in
        :meth:`SimulatorState.stats`'s shape."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Reset the server-wide statistics and every account's."""
        self._stats.reset()
        for state in self.states():
            state.reset_stats()

    def update_config(self, **knobs: Any) -> SimulatorConfig:
        """Set runtime knobs on every account; returns the first account's config.

        Raises:
            ValueError, TypeError: an unknown knob or a bad value (no account changes).
        """
        states = self.states()
        new = states[0].update_config(**knobs)  # validates before any account changes
        for state in states[1:]:
            state.update_config(**knobs)
        return new

    def expire_tokens(self) -> int:
        """Expire every account's issued access tokens; returns how many there were."""
        return sum(state.expire_tokens() for state in self.states())

    def issued_secrets(self) -> list[str]:
        """Every account's master token, client secret and issued tokens and codes."""
        return [secret for state in self.states() for secret in state.issued_secrets()]

    def summary(self) -> list[dict[str, Any]]:
        """Each account's name, seed, client id and rate limit (no secrets)."""
        return [
            {"name": name, "seed": state.config.seed, "client_id": state.client_id,
             "rate_limit_rps": state.config.rate_limit_rps, "generated": state.generated}
            for name, state in self._states.items()
        ]  # fmt: skip
