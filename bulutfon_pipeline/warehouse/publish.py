"""The analysts' file: a read-only copy of the warehouse, published after each load.

DuckDB lets one read-write process or many read-only processes use a file, never both,
so an analyst (a notebook, a BI tool) holding a read-only connection on the warehouse
would stop every load for as long as it held it. Analysts read a copy instead, which a
load never opens:

1. open the warehouse in a transaction (waiting, like any write, while another process
   holds it) and ``CHECKPOINT``, so the file alone holds every committed row and no WAL is needed;
2. while that connection is still held (no other process can write meanwhile), copy the
   file to ``<analytics>.tmp`` beside the analysts' file and ``fsync`` it;
3. ``os.replace`` the temporary file over the analysts' file, then ``fsync`` the folder.

The rename is atomic: a new connection sees either the whole previous copy or the whole
new one, never a half-written file, and a reader that holds the previous file keeps its
consistent view (its open file descriptor still points at the old inode, which the
kernel frees when the reader closes it). A crash before the rename leaves the previous
analysts' file as it was and a stray ``.tmp``, which the next publish overwrites.

Why a plain file copy: it is a sequential read and write of the file (``sendfile`` on
Linux, which on copy-on-write file systems may share blocks), with no DuckDB work besides
the checkpoint. ``ATTACH`` + ``COPY FROM DATABASE`` rewrites every table and index through
DuckDB and was slower (benchmarks/analytics.py measures both).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bulutfon_pipeline.faults import crash_point
from bulutfon_pipeline.warehouse import Warehouse, WarehouseError

__all__ = ["PublishResult", "publish_analytics"]


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_analytics` did.

    Attributes:
        path: the analysts' file now in place.
        bytes: its size.
        seconds: the time the publish took (checkpoint, copy, rename).
    """

    path: Path
    bytes: int
    seconds: float

    def to_metadata(self) -> dict[str, str | int | float]:
        """As Dagster materialization metadata."""
        return {
            "analytics_path": str(self.path),
            "analytics_bytes": self.bytes,
            "analytics_publish_s": round(self.seconds, 3),
        }


def publish_analytics(warehouse: Warehouse, target: Path) -> PublishResult:
    """Publish a read-only copy of ``warehouse`` at ``target``, atomically.

    Args:
        warehouse: the warehouse (its file must exist with its schema).
        target: the analysts' file; its folder must exist.

    Returns:
        Where the copy is, its size and the time it took.

    Raises:
        WarehouseLockedError: another process held the warehouse for its lock timeout.
        WarehouseError: the checkpoint, the copy or the rename failed; the previous
            analysts' file is left as it was.
    """
    started = time.monotonic()
    if target.resolve() == warehouse.path.resolve():
        raise WarehouseError(
            f"BULUTFON_ANALYTICS_PATH ({target}) is the warehouse itself; point it elsewhere"
        )
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.unlink(missing_ok=True)  # a crashed publish's leftover
        # The connection is held through the copy so that no other process writes the
        # file meanwhile (DuckDB admits one read-write process at a time). CHECKPOINT
        # runs inside the (empty) transaction and empties the WAL into the file.
        with warehouse.transaction() as con:
            con.execute("CHECKPOINT")
            shutil.copyfile(warehouse.path, temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        crash_point("publish_before_replace")
        # A WAL beside the analysts' file can only come from someone who opened it for
        # writing; replayed against the new copy it would corrupt it.
        target.with_name(target.name + ".wal").unlink(missing_ok=True)
        os.replace(temporary, target)
        _fsync_folder(target.parent)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise WarehouseError(
            f"cannot publish the analysts' copy {target}: {error.strerror or error}"
        ) from error
    except WarehouseError:
        temporary.unlink(missing_ok=True)
        raise
    except Exception as error:  # a DuckDB error from the checkpoint
        temporary.unlink(missing_ok=True)
        first = str(error).strip().splitlines()
        raise WarehouseError(
            f"cannot publish the analysts' copy {target}: {first[0] if first else error!r}"
        ) from error
    return PublishResult(
        path=target, bytes=target.stat().st_size, seconds=time.monotonic() - started
    )


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (the folder's entry), where the platform allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
