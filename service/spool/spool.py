"""A durable local spool: append-only segment files of JSON lines, with an index by frame.

Layout of the folder (one per API process, held with an exclusive ``flock``)::

    000000000001.jsonl   sealed segments, replayed in number order, deleted once committed
    000000000002.jsonl   the segment being appended to (a new one at every start)
    rejected.jsonl       records the database refused for good, kept for an operator
    .lock

Each record is written (unbuffered) and fsync'd before ``append`` returns, so a result a client
was told about survives a crash of the process or the machine. A crash during a write leaves
at most a torn last line (no newline): it is ignored on reading, and never appended to,
because every process start and every failed write begins a new segment.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from service.metrics import set_spool_depth
from service.spool.records import Key

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
SEGMENT_BYTES = 16 * 1024 * 1024
"""A segment is sealed once it grows past this; replay reads one whole segment at a time."""
REJECTED_FILE = "rejected.jsonl"
LOCK_FILE = ".lock"


class SpoolUnavailable(OSError):
    """The spool was not opened, or its folder is held by another process."""


@dataclass(frozen=True)
class Location:
    segment: int
    offset: int
    length: int


@dataclass
class Segment:
    records: int = 0
    keys: list[Key] = field(default_factory=list)


class Spool:
    """Thread-safe; ``key_of`` tells the key of a record (or raises ``ValueError``)."""

    def __init__(
        self,
        folder: Path,
        key_of: Callable[[bytes], Key | None],
        *,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.folder = folder
        self._key_of = key_of
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._lock_file: BinaryIO | None = None
        self._segments: dict[int, Segment] = {}
        self._index: dict[Key, Location] = {}
        self._writer: io.FileIO | None = None
        self._writer_segment = 0
        self._writer_size = 0
        self._pending = 0
        self._problem: str | None = "the spool is not open"

    def open(self) -> None:
        """Create and lock the folder, and index what an earlier process left in it."""
        with self._lock:
            try:
                self._lock_file = self._lock_folder()
                for path in sorted(self.folder.glob(f"*{SEGMENT_SUFFIX}")):
                    if path.stem.isdigit():
                        self._index_segment(int(path.stem))
            except OSError as error:
                self._problem = f"cannot open the spool {self.folder}: {error}"
                self._close_files()
                self._segments, self._index, self._pending = {}, {}, 0
                raise
            self._writer_segment = max(self._segments, default=0)
            self._problem = None
            self._publish_depth()

    def _lock_folder(self) -> BinaryIO:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock_file = (self.folder / LOCK_FILE).open("ab")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            lock_file.close()
            raise SpoolUnavailable(f"{self.folder} is used by another process") from error
        return lock_file

    def close(self) -> None:
        with self._lock:
            self._close_files()
            self._problem = "the spool is closed"

    def _close_files(self) -> None:
        self._close_writer()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def pending(self) -> int:
        """Records waiting in the spool."""
        return self._pending

    def problem(self) -> str | None:
        """Why a record could not be appended now, or None."""
        if self._problem is None and not os.access(self.folder, os.W_OK):
            return f"{self.folder} is not writable"
        return self._problem

    def append(self, record: bytes, key: Key | None) -> bytes | None:
        """Write ``record`` (one line, newline included) durably.

        If a record with ``key`` is already spooled, nothing is written and that record is
        returned: the spool, like the database, keeps one result per frame.
        """
        if not record.endswith(b"\n") or b"\n" in record[:-1]:
            raise ValueError("a spool record is exactly one line, ending with a newline")
        with self._lock:
            if self._lock_file is None:
                raise SpoolUnavailable(self._problem or "the spool is not open")
            if key is not None and key in self._index:
                return self._read(self._index[key])
            offset = 0
            try:
                if self._writer is None or self._writer_size >= self._segment_bytes:
                    self._start_segment()
                assert self._writer is not None
                offset = self._writer_size
                _write_all(self._writer, record)
                os.fsync(self._writer.fileno())
            except OSError as error:
                self._problem = f"cannot write to {self.folder}: {error}"
                self._abandon_writer(offset)
                raise
            self._writer_size += len(record)
            segment = self._segments[self._writer_segment]
            segment.records += 1
            self._pending += 1
            if key is not None:
                segment.keys.append(key)
                self._index[key] = Location(self._writer_segment, offset, len(record))
            self._problem = None
            self._publish_depth()
            return None

    def find(self, key: Key) -> bytes | None:
        """The spooled record of ``key``, if any."""
        with self._lock:
            location = self._index.get(key)
            return None if location is None else self._read(location)

    def seal(self) -> list[int]:
        """Stop appending to the current segment; every segment, oldest first, is now sealed."""
        with self._lock:
            self._close_writer()
            return sorted(self._segments)

    def read(self, segment: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """(offset, record) of each complete line of a sealed segment from ``start`` on."""
        yield from _lines(self._path(segment).read_bytes(), start)

    def remove(self, segment: int) -> None:
        """Delete a sealed segment whose records are all in the database."""
        with self._lock:
            self._path(segment).unlink(missing_ok=True)
            _fsync_folder(self.folder)
            removed = self._segments.pop(segment)
            self._pending -= removed.records
            for key in removed.keys:
                if self._index.get(key, Location(-1, 0, 0)).segment == segment:
                    del self._index[key]
            self._publish_depth()

    def reject(self, record: bytes, reason: str) -> None:
        """Keep a record the database refuses for good in ``rejected.jsonl``, out of the way."""
        logger.error("spooled record rejected (%s): %.200r", reason, record)
        line = record if record.endswith(b"\n") else record + b"\n"
        with self._lock, (self.folder / REJECTED_FILE).open("ab") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def _index_segment(self, number: int) -> None:
        segment = self._segments[number] = Segment()
        data = self._path(number).read_bytes()
        end = 0
        for offset, record in _lines(data):
            end = offset + len(record)
            segment.records += 1
            self._pending += 1
            try:
                key = self._key_of(record)
            except ValueError as error:  # replay rejects it; the index only skips it
                logger.warning(
                    "spool segment %d: unreadable record at %d: %s", number, offset, error
                )
                continue
            if key is not None and key not in self._index:
                segment.keys.append(key)
                self._index[key] = Location(number, offset, len(record))
        if end < len(data):
            logger.warning("spool segment %d: ignoring a torn last record", number)

    def _start_segment(self) -> None:
        self._close_writer()
        self._writer_segment += 1
        self._writer = self._path(self._writer_segment).open("xb", buffering=0)
        self._writer_size = 0
        self._segments[self._writer_segment] = Segment()
        _fsync_folder(self.folder)

    def _abandon_writer(self, size: int) -> None:
        """After a failed write: cut what it left, and take a fresh segment next time."""
        writer, self._writer = self._writer, None
        if writer is None:  # the new segment could not even be created
            return
        try:
            writer.truncate(size)
        except OSError:  # what is left is a torn line, which reading ignores
            logger.warning("spool segment %d: could not cut a failed write", self._writer_segment)
        finally:
            writer.close()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _read(self, location: Location) -> bytes:
        with self._path(location.segment).open("rb") as file:
            file.seek(location.offset)
            return file.read(location.length)

    def _path(self, segment: int) -> Path:
        return self.folder / f"{segment:012d}{SEGMENT_SUFFIX}"

    def _publish_depth(self) -> None:
        set_spool_depth(self._pending)


def _lines(data: bytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of every newline-terminated line; a torn last line is left out."""
    offset = start
    while (end := data.find(b"\n", offset)) >= 0:
        if end > offset:
            yield offset, data[offset : end + 1]
        offset = end + 1


def _write_all(file: io.FileIO, data: bytes) -> None:
    """Unbuffered, so that nothing of a failed write is left to reach the file later."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(f"{file.name}: the file took no bytes")
        view = view[written:]


def _fsync_folder(folder: Path) -> None:
    """Make a created or deleted file name durable, not only the file's bytes."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
