"""Received strips kept as they arrived (no re-encoding), with retention by age and total size.

Layout: ``<folder>/<YYYY-MM-DD>/<inspection id>.<png|jpg|bmp|tif|raw>``, the day being the
inspection's ``received_at`` (UTC), so an inspection's image is found without a search.
Files are written to a temporary name and renamed (no fsync: a strip lost in a crash only
costs its picture); a failed write removes its temporary file, and ``open`` removes those a
crash left behind. The process keeps the files it knows of in the order they were written
and deletes the oldest on every write while the folder is over its limits, so retention costs
nothing per request beyond the deletes. Several processes sharing one folder each enforce the
limits over the files they know of: give each its own folder, or expect up to N times the size.

``offer`` hands a strip to one writer thread and returns: a 400 KB file write is no part of
answering, and written in the request's own thread it lengthened every answer. ``find`` waits
for its own strip if that is still queued, not for the strips queued around it, so a strip is
found as soon as its inspection's answer is out; it waits ``find_wait_s`` at most, so that a
stalled disk makes an overlay say its strip is missing instead of hanging the request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.config import KeepImages
from service.inference.decode import RAW_MEDIA_TYPE, media_type
from service.metrics import count_strip_not_kept
from service.threads import name_os_thread

logger = logging.getLogger(__name__)

SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    RAW_MEDIA_TYPE: ".raw",
}
MEDIA_OF_SUFFIX = {suffix: kind for kind, suffix in SUFFIXES.items()}

MAX_WAITING_STRIPS = 64
"""Strips handed over and not yet written (64 raw 256x1600 strips: 26 MB). Beyond that, a disk
that cannot keep up loses pictures, not memory: the strip is dropped and a warning logged."""
FIND_WAIT_S = 2.0
"""Longest ``find`` waits for its strip's write: far beyond a healthy disk's queue of strips."""
ORPHAN_AGE_S = 600.0
"""Age beyond which ``open`` takes a temporary file for a crash's leftover: younger ones may be
another process's writes in progress, in a folder shared against advice."""
TEMPORARY_SUFFIX = ".tmp"


@dataclass(frozen=True)
class KeptImage:
    path: Path
    content_type: str

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class _Strip:
    inspection_id: uuid.UUID
    received_at: datetime
    data: bytes
    content_type: str


@dataclass(frozen=True)
class _File:
    path: Path
    size: int
    written: float
    """Seconds since the epoch."""


class ImageArchive:
    def __init__(
        self,
        folder: Path,
        *,
        keep: KeepImages,
        max_age: timedelta,
        max_bytes: int,
        find_wait_s: float = FIND_WAIT_S,
    ) -> None:
        self.folder, self.policy = folder, keep
        self.max_age, self.max_bytes, self.find_wait_s = max_age, max_bytes, find_wait_s
        self._files: deque[_File] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._waiting: queue.Queue[_Strip | None] = queue.Queue(MAX_WAITING_STRIPS)
        self._pending: dict[uuid.UUID, threading.Event] = {}
        """Per strip handed over and not yet written (or failed), set once it is."""
        self._pending_lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def open(self) -> None:
        """Learn the files already there (oldest first), apply the limits to them, remove the
        temporary files a crash left, and start the writer."""
        self.folder.mkdir(parents=True, exist_ok=True)
        found, orphaned_before = [], time.time() - ORPHAN_AGE_S
        for path in self.folder.glob("*/*"):
            if path.suffix == TEMPORARY_SUFFIX:
                _remove_if_older(path, orphaned_before)
            elif path.suffix in MEDIA_OF_SUFFIX:
                stat = path.stat()
                found.append(_File(path, stat.st_size, stat.st_mtime))
        with self._lock:
            self._files = deque(sorted(found, key=lambda file: file.written))
            self._bytes = sum(file.size for file in found)
            self._prune()
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_forever, name="image-archive", daemon=True
            )
            self._writer.start()

    def close(self) -> None:
        """Write the strips handed over so far, then stop the writer."""
        if self._writer is not None:
            self._waiting.put(None)
            self._writer.join()
            self._writer = None

    def offer(
        self,
        *,
        inspection_id: uuid.UUID,
        received_at: datetime,
        has_defect: bool,
        data: bytes,
        content_type: str,
    ) -> None:
        """Hand a received strip to the writer if the policy wants it kept; never raises and
        never blocks: the inspection's result matters, its picture does not."""
        if self.policy == "none" or (self.policy == "defects" and not has_defect):
            return
        written = threading.Event()
        with self._pending_lock:
            self._pending[inspection_id] = written
        try:
            self._waiting.put_nowait(_Strip(inspection_id, received_at, data, content_type))
        except queue.Full:
            self._release_waiters(inspection_id)
            count_strip_not_kept("behind")
            logger.warning(
                "strip of inspection %s not kept: %d strips are still waiting for the disk",
                inspection_id,
                MAX_WAITING_STRIPS,
            )

    def _write_forever(self) -> None:
        name_os_thread()
        while (strip := self._waiting.get()) is not None:
            try:
                self.keep(
                    inspection_id=strip.inspection_id,
                    received_at=strip.received_at,
                    data=strip.data,
                    content_type=strip.content_type,
                )
            except Exception:  # the writer must outlive any one strip: log it and go on
                count_strip_not_kept("failed")
                logger.exception("strip of inspection %s not kept", strip.inspection_id)
            finally:
                self._release_waiters(strip.inspection_id)

    def _release_waiters(self, inspection_id: uuid.UUID) -> None:
        """Release whoever waits for this strip: it is written, failed or dropped."""
        with self._pending_lock:
            written = self._pending.pop(inspection_id, None)
        if written is not None:
            written.set()

    def keep(
        self, *, inspection_id: uuid.UUID, received_at: datetime, data: bytes, content_type: str
    ) -> None:
        suffix = SUFFIXES.get(media_type(content_type))
        if suffix is None:
            raise ValueError(f"no file type for media type {content_type!r}")
        path = self._day(received_at) / f"{inspection_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}{TEMPORARY_SUFFIX}")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        with self._lock:
            self._files.append(_File(path, len(data), datetime.now(UTC).timestamp()))
            self._bytes += len(data)
            self._prune()

    def find(self, *, inspection_id: uuid.UUID, received_at: datetime) -> KeptImage | None:
        """The kept strip of an inspection, once it is written if it was still waiting for the
        writer (only for its own write, not for the strips queued around it); None if it is
        not kept, or not written within ``find_wait_s``."""
        with self._pending_lock:
            written = self._pending.get(inspection_id)
        if written is not None and self._writer is not None and not written.wait(self.find_wait_s):
            logger.warning(
                "strip of inspection %s not written after %.1f s: the disk is stalled or far "
                "behind",
                inspection_id,
                self.find_wait_s,
            )
            return None
        for path in self._day(received_at).glob(f"{inspection_id}.*"):
            if path.suffix in MEDIA_OF_SUFFIX:
                return KeptImage(path, MEDIA_OF_SUFFIX[path.suffix])
        return None

    def _day(self, received_at: datetime) -> Path:
        return self.folder / received_at.astimezone(UTC).strftime("%Y-%m-%d")

    def _prune(self) -> None:
        oldest_kept = datetime.now(UTC).timestamp() - self.max_age.total_seconds()
        while self._files and (
            self._bytes > self.max_bytes or self._files[0].written < oldest_kept
        ):
            file = self._files.popleft()
            self._bytes -= file.size
            try:
                file.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                logger.warning("could not delete kept image %s: %s", file.path, error)


def _remove_if_older(path: Path, seconds: float) -> None:
    """Delete ``path`` if it was last written before ``seconds`` since the epoch."""
    with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
        if path.stat().st_mtime < seconds:
            path.unlink()
