"""The receiver's settings, read from the environment once (``WebhookConfig.from_env``).

Every default is a constant here, with its variable and the reason for its value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bulutfon_pipeline.accounts import load_accounts
from bulutfon_pipeline.settings import DEFAULT_ACCOUNT, DEFAULT_DATA_DIR, SettingsError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_SENSOR_INTERVAL_S",
    "INBOX_FILENAME",
    "WebhookConfig",
    "WebhookConfigError",
    "inbox_path_for",
    "is_loopback",
]

#: BULUTFON_WEBHOOK_MAX_BYTES: a post above this is answered 413 without being read
#: further. A call_hangup with a long call flow is a few kB (the simulator's largest is
#: under 4 kB); 256 kB leaves room for flows of hundreds of steps and still bounds what
#: one request can make the receiver hold.
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: BULUTFON_WEBHOOK_SENSOR_INTERVAL_S: how often the sensor looks for new hangups. A call
#: waits for the next tick (up to this), then for its run (a process of its own: 12 s
#: median at a load average of 10 on 2 cores, mostly start-up), and a call arriving while
#: a run is in flight waits for that run too. At 10 s the 95th percentile measured was
#: 28 s against the 60 s target (benchmarks/webhook.py); a longer interval adds to every
#: call's wait, a shorter one only makes more ticks that find a run in flight.
DEFAULT_SENSOR_INTERVAL_S = 10
#: The inbox's file name under BULUTFON_DATA_DIR (BULUTFON_WEBHOOK_INBOX overrides the path).
INBOX_FILENAME = "webhook_inbox.sqlite3"
#: BULUTFON_WEBHOOK_RETENTION_DAYS: inbox rows older than this are deleted (0 keeps them).
#: A call is loaded by its run within a minute, or by the listing scan within its lookback
#: (48 h) whatever happened to its post: after that the rows are only an audit trail.
DEFAULT_RETENTION_DAYS = 30.0
#: BULUTFON_WEBHOOK_PATH: where the receiver accepts posts. Set an unguessable path in
#: production (no signature scheme is documented: Basic auth and the path are the guard).
DEFAULT_PATH = "/webhook"


class WebhookConfigError(SettingsError):
    """The receiver's configuration is unusable; one line naming the fix."""


def inbox_path_for(data_dir: Path) -> Path:
    """The default inbox file in ``data_dir``."""
    return data_dir / INBOX_FILENAME


def is_loopback(host: str) -> bool:
    """``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


@dataclass(frozen=True)
class WebhookConfig:
    """The receiver's knobs. ``password`` is excluded from ``repr``: it never reaches a log."""

    inbox_path: Path
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    path: str = DEFAULT_PATH
    retention_days: float = DEFAULT_RETENTION_DAYS
    #: The accounts whose posts it takes, at ``<path>/<account>`` (and ``default`` at the
    #: bare ``path``): those of ``BULUTFON_ACCOUNTS_FILE``, read when it starts.
    accounts: tuple[str, ...] = (DEFAULT_ACCOUNT,)

    @property
    def requires_auth(self) -> bool:
        return self.user is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookConfig:
        """Read ``BULUTFON_WEBHOOK_*`` (and ``BULUTFON_DATA_DIR``).

        Raises:
            WebhookConfigError: only one of the user and the password is set, a bad size
                cap or path.
            AccountsError: ``BULUTFON_ACCOUNTS_FILE`` is unreadable or malformed.
        """
        env = os.environ if env is None else env
        user = env.get("BULUTFON_WEBHOOK_USER") or None
        password = env.get("BULUTFON_WEBHOOK_PASSWORD") or None
        if (user is None) != (password is None):
            raise WebhookConfigError(
                "set both BULUTFON_WEBHOOK_USER and BULUTFON_WEBHOOK_PASSWORD, or neither"
            )
        raw_cap = env.get("BULUTFON_WEBHOOK_MAX_BYTES", "").strip()
        cap = DEFAULT_MAX_BODY_BYTES
        if raw_cap:
            if not raw_cap.isdigit() or int(raw_cap) < 1024:
                raise WebhookConfigError(
                    f"BULUTFON_WEBHOOK_MAX_BYTES={raw_cap!r} must be a whole number >= 1024"
                )
            cap = int(raw_cap)
        path = env.get("BULUTFON_WEBHOOK_PATH", "").strip() or DEFAULT_PATH
        if not path.startswith("/") or any(c in path for c in "?#% "):
            raise WebhookConfigError(
                f"BULUTFON_WEBHOOK_PATH must start with '/' and hold no '?', '#', '%' or "
                f"space, got {path!r}"
            )
        raw_days = env.get("BULUTFON_WEBHOOK_RETENTION_DAYS", "").strip()
        try:
            retention = float(raw_days) if raw_days else DEFAULT_RETENTION_DAYS
        except ValueError:
            retention = -1.0
        if not 0 <= retention < float("inf"):
            raise WebhookConfigError(
                f"BULUTFON_WEBHOOK_RETENTION_DAYS={raw_days!r} must be a number of days >= 0"
            )
        data_dir = Path(env.get("BULUTFON_DATA_DIR") or DEFAULT_DATA_DIR)
        inbox = env.get("BULUTFON_WEBHOOK_INBOX", "").strip()
        return cls(
            inbox_path=Path(inbox) if inbox else inbox_path_for(data_dir),
            user=user,
            password=password,
            max_body_bytes=cap,
            path=path,
            retention_days=retention,
            accounts=tuple(account.name for account in load_accounts(env)),
        )

    def check_host(self, host: str) -> None:
        """Refuse a non-loopback bind without credentials.

        Raises:
            WebhookConfigError: ``host`` is reachable from other machines and no
                BULUTFON_WEBHOOK_USER / BULUTFON_WEBHOOK_PASSWORD is set.
        """
        if not self.requires_auth and not is_loopback(host):
            raise WebhookConfigError(
                f"refusing to listen on {host} without HTTP Basic auth: set "
                "BULUTFON_WEBHOOK_USER and BULUTFON_WEBHOOK_PASSWORD (or bind to 127.0.0.1)"
            )
