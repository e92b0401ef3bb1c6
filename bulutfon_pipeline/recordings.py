"""Call recordings on disk, as plain Python (no dagster).

* :func:`download_recordings` downloads the audio of every call of a date range that has
  one to ``<data_dir>/recordings/YYYY/MM/DD/<uuid>.<wav|ogg|mp3>`` (local call date),
  with the client's bounded, adaptive fan-out, and records each file in
  ``call_recordings`` (one transaction per batch). A file already on disk whose size and
  sha256 match its row is not fetched again. A recording the API has removed (``REMOVED``
  or a 404) becomes a ``recording`` reject and the others carry on.
* :func:`purge_recordings` deletes the rows and files of calls before a date.

Recordings are personal data: nothing here logs more than uuids and counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bulutfon_pipeline import progress
from bulutfon_pipeline.normalize import Reject
from bulutfon_pipeline.warehouse import RecordingCandidate, RecordingRow, Warehouse

__all__ = [
    "RECORDINGS_DIR",
    "PurgeSummary",
    "RecordingsSummary",
    "download_recordings",
    "purge_recordings",
    "recording_stem",
]

log = logging.getLogger(__name__)

#: Folder under BULUTFON_DATA_DIR that holds the recordings.
RECORDINGS_DIR = "recordings"
#: Media type stored for each detected format (the API may say application/octet-stream).
MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
# A uuid becomes a file name: allow only characters that cannot leave the day folder.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_DAY_FOLDER = re.compile(r"(\d{4})/(\d{2})/(\d{2})")


#: What a download asks for: ``(uuid, dest)``, or ``(uuid, dest, url)`` when the call's
#: ``call_record`` is the recording's URL (the v2 API).
Download = tuple[str, Path] | tuple[str, Path, str]


class RecordingClient(Protocol):
    def download_recordings(self, items: Iterable[Download]) -> Iterator[Any]: ...


#: The counts of a recordings load, as named in its metadata.
_RECORDING_COUNTS = ("candidates", "downloaded", "skipped", "rejected", "bytes", "batches")


@dataclass
class RecordingsSummary:
    """What one recordings load of a date range did.

    It travels from the asset to the runner as materialization metadata: :meth:`to_metadata`
    and :meth:`from_metadata` are the only places that name its keys.
    """

    start: dt.date
    end: dt.date
    candidates: int = 0
    downloaded: int = 0
    skipped: int = 0
    rejected: int = 0
    bytes: int = 0
    batches: int = 0
    seconds: float = 0.0

    def to_metadata(self) -> dict[str, Any]:
        """Plain values for the asset's metadata."""
        return {
            "range": f"{self.start.isoformat()}..{self.end.isoformat()}",
            **{name: getattr(self, name) for name in _RECORDING_COUNTS},
            "duration_s": round(self.seconds, 3),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> RecordingsSummary:
        """The summary back from :meth:`to_metadata`'s values."""
        first, _, last = str(meta["range"]).partition("..")
        return cls(
            start=dt.date.fromisoformat(first),
            end=dt.date.fromisoformat(last),
            **{name: int(meta.get(name, 0)) for name in _RECORDING_COUNTS},
            seconds=float(meta.get("duration_s", 0.0)),
        )


@dataclass
class PurgeSummary:
    """What :func:`purge_recordings` deleted."""

    before: dt.date
    rows: int = 0
    files: int = 0
    stray_files: int = 0
    folders: list[str] = field(default_factory=list)


def recording_stem(uuid: str, call_date: dt.date, *, folder: str = RECORDINGS_DIR) -> Path:
    """``<folder>/YYYY/MM/DD/<uuid>`` (``folder``: ``recordings``, or an account's
    ``recordings/<account>``), relative to the data folder, without a suffix.

    Raises:
        ValueError: the uuid is not safe as a file name (e.g. holds ``/`` or ``..``).
    """
    if not _SAFE_NAME.fullmatch(uuid):
        raise ValueError("uuid is not usable as a file name")
    return Path(folder, f"{call_date:%Y}", f"{call_date:%m}", f"{call_date:%d}", uuid)


def file_matches(path: Path, size: int, sha256: str) -> bool:
    """``path`` is a file of ``size`` bytes whose sha256 is ``sha256``."""
    try:
        if not path.is_file() or path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _plan(
    candidates: list[RecordingCandidate],
    data_dir: Path,
    summary: RecordingsSummary,
    folder: str = RECORDINGS_DIR,
) -> tuple[list[Download], list[Reject], dict[str, RecordingRow]]:
    """Split candidates into downloads, rejects made without a request, and skips."""
    downloads: list[Download] = []
    rejects: list[Reject] = []
    previous: dict[str, RecordingRow] = {}
    for candidate in candidates:
        stored = candidate.stored
        if stored is not None and file_matches(data_dir / stored.path, stored.bytes, stored.sha256):
            summary.skipped += 1
            continue
        if not candidate.has_recording:  # call_record = REMOVED: nothing to fetch
            reason = "call_record is REMOVED: the API deleted this recording"
            rejects.append(
                Reject(uuid=candidate.uuid, stage="recording", reason=reason, payload=None)
            )
            continue
        try:
            stem = recording_stem(candidate.uuid, candidate.call_date, folder=folder)
        except ValueError as error:
            rejects.append(
                Reject(uuid=candidate.uuid, stage="recording", reason=str(error), payload=None)
            )
            continue
        if stored is not None:
            previous[candidate.uuid] = stored
        url = (candidate.call_record or "").strip()
        if url.startswith(("https://", "http://")):  # v2: call_record is the recording's URL
            downloads.append((candidate.uuid, data_dir / stem, url))
        else:
            downloads.append((candidate.uuid, data_dir / stem))
    return downloads, rejects, previous


def download_recordings(
    client: RecordingClient,
    warehouse: Warehouse,
    *,
    data_dir: Path,
    start: dt.date,
    end: dt.date,
    refetch: bool = False,
    batch_size: int = 200,
    folder: str = RECORDINGS_DIR,
) -> RecordingsSummary:
    """Download the recordings of the calls of local days ``start..end``.

    Candidates are the calls with ``has_recording`` (and ``REMOVED`` ones, which become
    rejects without a request). A call whose file is on disk with the size and sha256 of
    its ``call_recordings`` row is skipped; a missing or altered file is downloaded again.
    Each batch of ``batch_size`` results is written in one transaction, after its files
    were renamed into place, so a crash leaves at worst a file without a row, which the
    next run downloads again.

    Args:
        client: anything with ``download_recordings(items)`` streaming results.
        warehouse: the warehouse (schema must exist).
        data_dir: BULUTFON_DATA_DIR; files go under ``<data_dir>/recordings/``.
        start: first local day (inclusive).
        end: last local day (inclusive).
        refetch: retry calls that already have a ``recording`` reject.
        batch_size: results per transaction.
        folder: the recordings folder under ``data_dir`` (an account's own:
            ``accounts.Account.recordings_folder``).

    Returns:
        The counts of the load.
    """
    started = time.monotonic()
    summary = RecordingsSummary(start=start, end=end)
    candidates = warehouse.recording_candidates(start, end, refetch=refetch)
    summary.candidates = len(candidates)
    downloads, early_rejects, previous = _plan(candidates, data_dir, summary, folder)
    if early_rejects:
        with warehouse.write_turn():  # accounts loading in threads into one DuckDB file
            warehouse.save_recordings([], early_rejects)
        summary.rejected += len(early_rejects)
    bar = progress.reporter(warehouse.account)
    bar.start("recordings", len(downloads))
    try:
        for batch in _batched(client.download_recordings(downloads), batch_size):
            rows: list[RecordingRow] = []
            rejects: list[Reject] = []
            replaced: list[Path] = []
            now = dt.datetime.now(dt.UTC)
            for result in batch:
                if result.file is None:
                    reason = str(result.error) or type(result.error).__name__
                    rejects.append(
                        Reject(uuid=result.uuid, stage="recording", reason=reason, payload=None)
                    )
                    continue
                file = result.file
                relative = Path(os.path.relpath(file.path, data_dir)).as_posix()
                suffix = Path(file.path).suffix.lstrip(".")
                rows.append(
                    RecordingRow(
                        cdr_uuid=result.uuid,
                        path=relative,
                        content_type=MEDIA_TYPES.get(suffix, file.content_type),
                        bytes=file.bytes,
                        sha256=file.sha256,
                        downloaded_at=now,
                    )
                )
                summary.bytes += file.bytes
                old = previous.get(result.uuid)
                if old is not None and old.path != relative:  # the format changed
                    replaced.append(data_dir / old.path)
            with warehouse.write_turn():
                warehouse.save_recordings(rows, rejects)
            for stale in replaced:  # only once the new rows are committed
                stale.unlink(missing_ok=True)
            summary.batches += 1
            summary.downloaded += len(rows)
            summary.rejected += len(rejects)
            bar.advance("recordings", len(batch))
    finally:
        bar.finish("recordings")
    summary.seconds = time.monotonic() - started
    log.info(
        "recordings %s..%s: %d downloaded, %d skipped, %d rejected",
        start,
        end,
        summary.downloaded,
        summary.skipped,
        summary.rejected,
    )
    return summary


def purge_recordings(
    warehouse: Warehouse, *, data_dir: Path, before: dt.date, folder: str = RECORDINGS_DIR
) -> PurgeSummary:
    """Delete the recordings of calls dated before ``before``: rows first, then files.

    The rows go in one transaction; the files are deleted after it commits. A crash in
    between leaves files without rows in day folders older than ``before``: running the
    purge again with the same date deletes them, because it also sweeps every file left
    in those day folders (stray files, and ``.part`` files of interrupted downloads) and
    removes the folders once empty. Run it while no sync is writing (the CLI takes the
    sync lock).

    Returns:
        How many rows, files and stray files were deleted, and which day folders removed.
    """
    summary = PurgeSummary(before=before)
    paths = warehouse.delete_recordings_before(before)
    summary.rows = len(paths)
    for relative in paths:
        target = data_dir / relative
        if target.is_file():
            target.unlink()
            summary.files += 1
    root = data_dir / folder  # the warehouse's account's own folder
    if root.is_dir():
        for day_dir in sorted(root.glob("[0-9]" * 4 + "/" + "[0-9]" * 2 + "/" + "[0-9]" * 2)):
            match = _DAY_FOLDER.fullmatch(day_dir.relative_to(root).as_posix())
            if match is None:
                continue
            try:
                day = dt.date(*(int(part) for part in match.groups()))
            except ValueError:
                continue
            if day >= before:
                continue
            for stray in day_dir.iterdir():
                if stray.is_file():
                    stray.unlink()
                    summary.stray_files += 1
            for empty in (day_dir, day_dir.parent, day_dir.parent.parent):
                try:
                    empty.rmdir()  # only when empty
                except OSError:
                    break
            summary.folders.append(day_dir.relative_to(data_dir).as_posix())
    return summary
