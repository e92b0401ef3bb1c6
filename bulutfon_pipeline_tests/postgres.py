"""A throw-away PostgreSQL cluster for the tests: Debian's server binaries, a Unix socket.

:class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` (as the ``postgres`` user when the
tests run as root, since ``initdb`` refuses root) on a socket in a temporary folder, with
``listen_addresses=''``: no TCP port is opened, the port number only names the socket.
Each test gets its own database from :meth:`PostgresServer.create_database`.

A missing server is an error, never a skip: ``.ci/run`` installs the ``postgresql``
package when ``initdb`` is missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from uuid import uuid4

import psycopg

__all__ = ["PostgresServer", "find_pg_bin"]


def find_pg_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: on ``PATH``, else Debian's
    ``/usr/lib/postgresql/<version>/bin``.

    Raises:
        RuntimeError: no PostgreSQL server binaries on this machine.
    """
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise RuntimeError(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; "
        "install Debian's `postgresql` package (.ci/run does)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A PostgreSQL cluster of its own, started by :meth:`start`, removed by :meth:`stop`."""

    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="bulutfon-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0

    # --- lifecycle --------------------------------------------------------------------------

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
            )

    def start(self, *, durable: bool = False) -> PostgresServer:
        """``initdb`` (trust authentication, UTF-8) and ``pg_ctl start`` on the socket.

        Args:
            durable: keep the server's own defaults (``fsync``, ``synchronous_commit``,
                ``full_page_writes`` on, default ``shared_buffers`` and connections), as a
                production server runs; the benchmarks use it. By default (the tests) the
                server trades durability for speed: ``fsync=off`` and the like.
        """
        self.root.chmod(0o755)
        self.socket_dir.mkdir()
        if self._as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses=''"
        if not durable:
            options += (
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200 -c shared_buffers=64MB"
            )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        """The postmaster's process id (the first line of ``postmaster.pid``)."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- databases -------------------------------------------------------------------------

    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        """A SQLAlchemy URL for ``database`` over the socket (``driver``: psycopg or psycopg2)."""
        return f"postgresql+{driver}://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def conninfo(self, database: str = "postgres") -> str:
        """A libpq connection string for ``database``."""
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name by default) and return its name."""
        name = name or f"t_{uuid4().hex[:12]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever still uses it."""
        with psycopg.connect(self.conninfo(), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
