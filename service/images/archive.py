"""Received strips kept as they arrived (no re-encoding), with retention by age and total size.

Layout: ``<folder>/<YYYY-MM-DD>/<inspection id>.<png|jpg|bmp|tif|raw>``, the day being the
inspection's ``received_at`` (UTC), so an inspection's image is found without a search.
Files are written to a temporary name and renamed (no fsync: a strip lost in a crash only
costs its picture). The process keeps the files it knows of in the order they were written
and deletes the oldest on every write while the folder is over its limits, so retention costs
nothing per request beyond the deletes. Several processes sharing one folder each enforce the
limits over the files they know of: give each its own folder, or expect up to N times the size.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.config import KeepImages
from service.inference.decode import RAW_MEDIA_TYPE, media_type

logger = logging.getLogger(__name__)

SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    RAW_MEDIA_TYPE: ".raw",
}
MEDIA_OF_SUFFIX = {suffix: kind for kind, suffix in SUFFIXES.items()}


@dataclass(frozen=True)
class KeptImage:
    path: Path
    content_type: str

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class _File:
    path: Path
    size: int
    written: float
    """Seconds since the epoch."""


class ImageArchive:
    def __init__(
        self, folder: Path, *, keep: KeepImages, max_age: timedelta, max_bytes: int
    ) -> None:
        self.folder, self.policy = folder, keep
        self.max_age, self.max_bytes = max_age, max_bytes
        self._files: deque[_File] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        """Learn the files already there (oldest first) and apply the limits to them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        found = []
        for path in self.folder.glob("*/*"):
            if path.suffix in MEDIA_OF_SUFFIX:
                stat = path.stat()
                found.append(_File(path, stat.st_size, stat.st_mtime))
        with self._lock:
            self._files = deque(sorted(found, key=lambda file: file.written))
            self._bytes = sum(file.size for file in found)
            self._prune()

    def offer(
        self,
        *,
        inspection_id: uuid.UUID,
        received_at: datetime,
        has_defect: bool,
        data: bytes,
        content_type: str,
    ) -> None:
        """Keep a received strip if the policy wants it; a failure is logged, never raised:
        the inspection's result matters, its picture does not."""
        if self.policy == "none" or (self.policy == "defects" and not has_defect):
            return
        try:
            self.keep(
                inspection_id=inspection_id,
                received_at=received_at,
                data=data,
                content_type=content_type,
            )
        except (OSError, ValueError) as error:
            logger.warning("strip of inspection %s not kept: %s", inspection_id, error)

    def keep(
        self, *, inspection_id: uuid.UUID, received_at: datetime, data: bytes, content_type: str
    ) -> None:
        suffix = SUFFIXES.get(media_type(content_type))
        if suffix is None:
            raise ValueError(f"no file type for media type {content_type!r}")
        path = self._day(received_at) / f"{inspection_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        with self._lock:
            self._files.append(_File(path, len(data), datetime.now(UTC).timestamp()))
            self._bytes += len(data)
            self._prune()

    def find(self, *, inspection_id: uuid.UUID, received_at: datetime) -> KeptImage | None:
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
