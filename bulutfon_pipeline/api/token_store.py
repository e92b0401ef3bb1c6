"""The token file: ``<data_dir>/bulutfon_token.json``, read and replaced atomically.

Refresh tokens rotate, so every new pair must reach the disk whole or not at all: it is
written to a temp file in the same directory (mode 0600), fsynced, then renamed over the
old file with ``os.replace``. Reading a token registers both of its strings as secrets.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from bulutfon_pipeline.api.errors import AuthError, ConfigError
from bulutfon_pipeline.api.models import Token
from bulutfon_pipeline.api.redact import register_secret

__all__ = ["TokenStore"]


class TokenStore:
    """The token file: read it, and replace it atomically with mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Token | None:
        """The stored token, or ``None`` when there is no file.

        Raises:
            ConfigError: the file exists but is unreadable or not a token.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"Cannot read token file {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
            token = Token.from_response(data)
        except (ValueError, AuthError, AttributeError):
            token = None
        if token is None:
            raise ConfigError(
                f"Token file {self.path} is not a valid token; delete it and run "
                "`bulutfon-pipeline auth` again"
            )
        register_secret(token.access_token, token.refresh_token)
        return token

    def save(self, token: Token) -> None:
        """Write ``token`` atomically: temp file (0600) in the same dir, fsync, replace."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(token.to_json(), indent=2).encode("utf-8")
        # mkstemp creates the file with mode 0600, so the secret is never world-readable.
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable; not every platform/filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
