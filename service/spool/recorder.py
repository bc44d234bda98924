"""Results are never lost: into the database when it takes them, else into the spool, which a
background thread replays into the database, in order, once it answers again.

After a write fails for a reason that is not the record's own (connection refused, timeout,
server gone), the database is taken to be down: requests then go straight to the spool instead
of each waiting on a dead server, and the replayer pings it every interval until it answers.

Which frames are already recorded is decided by the database's unique constraint (and the
spool's index), not by a read before the write. The recorder also remembers the frames it
recorded lately (``recorded_lately``), so that a gateway's retry can be answered from the stored
result without running the model again, while a new frame costs no query at all.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from service.db import (
    Inspection,
    InspectionValues,
    frame_inspection_id,
    get_inspection,
    insert_inspection,
    ping,
)
from service.metrics import RESULTS_REFUSED, count_database_write_failure, count_spool_rejected
from service.spool import records
from service.spool.spool import Spool
from service.threads import name_os_thread

logger = logging.getLogger(__name__)

RECENT_FRAMES = 50_000
"""Frames remembered by ``recorded_lately``: 40 minutes of a line at 20 strips a second, about
14 MB of gateway-style keys. A retry of an older frame (or one recorded by another process, or
before a restart) runs the model again and is then answered with the stored result by the
unique constraint."""


class ResultsUnavailable(Exception):
    """Neither the database nor the spool could keep a result."""


class ResultRefused(Exception):
    """The database refused a result for a reason of its own, not an outage: it would refuse it
    again, so it is not spooled. The request's checks should have caught it: a bug, logged."""


class ResultRecorder:
    def __init__(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        spool: Spool,
        *,
        replay_interval_s: float,
        on_recorded: Callable[[InspectionValues], None] | None = None,
    ) -> None:
        self.spool = spool
        self._on_recorded = on_recorded
        """Told of every new result once it is kept (written or spooled), never of a replay."""
        self._engine, self._sessions = engine, sessions
        self._interval = replay_interval_s
        self._down: str | None = None
        """Why the database is taken to be down; None while it takes writes."""
        self._progress: dict[int, int] = {}
        """Per sealed segment, the offset up to which its records are committed."""
        self._recent: OrderedDict[records.Key, None] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._replaying = threading.Lock()
        self._stop = threading.Event()
        self._replayer: threading.Thread | None = None

    def start(self) -> None:
        """Open the spool (a failure is reported by /readyz, not fatal) and start replaying."""
        try:
            self.spool.open()
        except OSError as error:
            logger.error("spool unusable, results are lost if the database fails: %s", error)
        self._stop.clear()
        self._replayer = threading.Thread(
            target=self._replay_forever, name="spool-replayer", daemon=True
        )
        self._replayer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._replayer is not None:
            self._replayer.join()
            self._replayer = None
        self.spool.close()

    def recorded_lately(self, *, camera_id: str, frame_id: str) -> bool:
        """Whether this recorder kept the frame's result lately: then ``find`` is worth its query.

        False does not mean new: ``record`` still refuses a frame stored before, and returns the
        stored result instead.
        """
        with self._recent_lock:
            return (camera_id, frame_id) in self._recent

    def _remember(self, row: Inspection | InspectionValues) -> None:
        key = records.key_of_row(row)
        if key is None:
            return
        with self._recent_lock:
            self._recent[key] = None
            if len(self._recent) > RECENT_FRAMES:
                self._recent.popitem(last=False)

    def find(self, *, camera_id: str, frame_id: str) -> Inspection | InspectionValues | None:
        """A frame's recorded result: the spool's (not yet in the database), else the
        database's (unless it is down: then the frame is taken as new)."""
        spooled = self.spool.find((camera_id, frame_id))
        if spooled is not None:
            return records.decode(spooled)
        if self._down is not None:
            return None
        try:
            with self._engine.connect() as connection:
                found = frame_inspection_id(connection, camera_id=camera_id, frame_id=frame_id)
            if found is None:
                return None
            with self._sessions() as session:
                return get_inspection(session, inspection_id=found)
        except SQLAlchemyError as error:
            self._mark_down(error)
            return None

    def record(self, row: InspectionValues) -> tuple[Inspection | InspectionValues, bool]:
        """Keep ``row``: ``(row, True)``, or ``(earlier, False)`` when its frame already was."""
        kept = self._keep(row)
        self._remember(kept[0])
        if kept[1] and self._on_recorded is not None:
            self._on_recorded(row)
        return kept

    def _keep(self, row: InspectionValues) -> tuple[Inspection | InspectionValues, bool]:
        spooled = self._spooled_instead(row)
        if spooled is not None:
            return spooled, False
        if self._down is None:
            try:
                with self._engine.connect() as connection:
                    return insert_inspection(connection, row)
            except SQLAlchemyError as error:
                if _about_the_record(error):
                    RESULTS_REFUSED.inc()
                    logger.error("inspection %s refused by the database: %s", row.id, error)
                    raise ResultRefused(
                        f"the database refused the result: {_describe(error)}"
                    ) from error
                logger.warning("inspection %s goes to the spool: %s", row.id, _describe(error))
                self._mark_down(error)
        count_database_write_failure("request")
        try:
            earlier = self.spool.append(records.encode(row), records.key_of_row(row))
        except OSError as error:
            logger.error("inspection %s not kept: the spool failed too: %s", row.id, error)
            raise ResultsUnavailable(
                "the result could not be recorded: the database and the local spool both failed"
            ) from error
        return (row, True) if earlier is None else (records.decode(earlier), False)

    def _spooled_instead(self, row: InspectionValues) -> InspectionValues | None:
        """The result the spool holds for ``row``'s frame, not yet replayed.

        Checked before the database: a frame spooled while the database was down and retried
        once it is back, but before the replay reached it, would otherwise be written under a
        second id (the spooled one then refused as a duplicate); the gateway keeps the first.
        """
        key = records.key_of_row(row)
        found = None if key is None else self.spool.find(key)
        return None if found is None else records.decode(found)

    def database_problem(self) -> str | None:
        """Why results cannot go to the database now; None when it answers and is migrated."""
        if self._down is None:
            try:
                ping(self._engine)
            except SQLAlchemyError as error:
                self._mark_down(error)
        return self._down

    def replay(self) -> int:
        """One pass: if the database answers, write the spool to it in order, removing each
        segment once all its records are committed. Returns how many records were new to it.

        Records already in the database (same id, or same frame) are skipped, so a pass cut
        short by a crash or an outage is simply run again.
        """
        with self._replaying:
            if self._down is None and self.spool.pending == 0:
                return 0
            try:
                ping(self._engine)
            except SQLAlchemyError as error:
                self._mark_down(error)
                return 0
            if self._down is not None:
                logger.info("database back: replaying %d spooled results", self.spool.pending)
                self._down = None
            written = 0
            for segment in self.spool.seal():
                for offset, line in self.spool.read(segment, self._progress.get(segment, 0)):
                    if self._stop.is_set() or (new := self._replay_one(line)) is None:
                        return written
                    written += new
                    self._progress[segment] = offset + len(line)
                self.spool.remove(segment)
                self._progress.pop(segment, None)
            return written

    def _replay_one(self, line: bytes) -> bool | None:
        """Whether the record was new to the database; None when the database failed."""
        try:
            row = records.decode(line)
        except records.RecordError as error:
            self._reject(line, str(error))
            return False
        try:
            with self._engine.connect() as connection:
                return insert_inspection(connection, row)[1]
        except SQLAlchemyError as error:
            count_database_write_failure("replay")
            if not _about_the_record(error):
                self._mark_down(error)
                return None
            self._reject(line, _describe(error))
            return False

    def _reject(self, line: bytes, reason: str) -> None:
        self.spool.reject(line, reason)
        count_spool_rejected()

    def _mark_down(self, error: SQLAlchemyError) -> None:
        if self._down is None:
            logger.error("database unavailable, results go to the spool: %s", _describe(error))
        self._down = _describe(error)

    def _replay_forever(self) -> None:
        name_os_thread()
        while True:
            try:
                self.replay()
            except Exception:  # the thread must outlive any one failure: log and try again
                logger.exception("spool replay failed; trying again in %.1f s", self._interval)
            if self._stop.wait(self._interval):
                return


def _about_the_record(error: SQLAlchemyError) -> bool:
    """Whether the database refused this record (it would refuse it again), rather than failed."""
    if isinstance(error, IntegrityError | DataError):
        return True
    return isinstance(error, StatementError) and not isinstance(error, DBAPIError)


def _describe(error: Exception) -> str:
    """One line for logs and /readyz: the error's type and the first line of its message."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
