"""What the line hears of each recorded inspection: an MQTT message, and the alarms it fires.

``LineEvents.inspected`` is called on the answer's path and only queues the inspection; one
thread, in the order the inspections were recorded, feeds the alarm rules, stores what fires,
and publishes both. A broker or a database that is slow or down never delays an answer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.db.alarms import insert_alarm
from service.db.values import InspectionValues
from service.events.alarms import ANY_LINE, Alarm, AlarmEngine, AlarmRule, StripSeen
from service.events.mqtt import MqttPublisher
from service.metrics import ALARMS
from service.threads import name_os_thread

logger = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Inspections waiting for the alarm rules; beyond it the newest are not evaluated (logged)."""


def inspection_topic(prefix: str, row: InspectionValues) -> str:
    return f"{prefix}/{_segment(row.line_id)}/{_segment(row.camera_id)}/inspection"


def alarm_topic(prefix: str, line_id: str) -> str:
    return f"{prefix}/{_segment(line_id)}/alarm"


def _segment(value: str | None) -> str:
    """A topic level from an id: MQTT's wildcards and separators cannot appear in one."""
    if not value:
        return ANY_LINE
    return value.replace("/", "_").replace("+", "_").replace("#", "_")


def inspection_message(row: InspectionValues) -> dict[str, Any]:
    """The inspection without its masks: small, and linked to the rest by its id."""
    return {
        "inspection_id": str(row.id),
        "frame_id": row.frame_id,
        "camera_id": row.camera_id,
        "line_id": row.line_id,
        "coil_id": row.coil_id,
        "position_m": row.position_m,
        "captured_at": None if row.captured_at is None else row.captured_at.isoformat(),
        "received_at": row.received_at.isoformat(),
        "model": {"name": row.model_name, "version": row.model_version},
        "has_defect": row.has_defect,
        "defects": [
            {
                "class_id": defect.class_id,
                "class_name": defect.class_name,
                "area_px": defect.area_px,
                "score": defect.score,
                "bbox": list(defect.bbox),
            }
            for defect in row.defects
        ],
    }


class LineEvents:
    """Publishes recorded inspections and evaluates alarm rules on them, off the answer's path.

    ``publisher`` None: no MQTT (alarms are still stored and counted). The rules see the
    strips this process records; ``docs/ARCHITECTURE.md`` says what that means with replicas.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        rules: Sequence[AlarmRule],
        publisher: MqttPublisher | None,
        topic_prefix: str,
    ) -> None:
        self.publisher = publisher
        self.topic_prefix = topic_prefix
        self._engine = engine
        self._alarms = AlarmEngine(rules)
        self._queue: queue.Queue[InspectionValues | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="line-events", daemon=True)
        self._has_rules = bool(rules)

    def start(self) -> None:
        if self.publisher is not None:
            self.publisher.start()
        self._thread.start()

    def stop(self) -> None:
        """Evaluate what is queued, then let the publisher send what it can."""
        self._queue.put(None)
        self._thread.join(timeout=10)
        if self.publisher is not None:
            self.publisher.close()

    def inspected(self, row: InspectionValues) -> None:
        """A new inspection was recorded (or spooled): publish it, then feed the rules."""
        if self.publisher is not None:
            self.publisher.offer(inspection_topic(self.topic_prefix, row), inspection_message(row))
        if not self._has_rules:
            return
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            logger.warning("alarm rules behind: inspection %s not evaluated", row.id)

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued inspection has been evaluated (for tests and shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def status(self) -> Mapping[str, Any]:
        """For /readyz: the broker's state (or off) and how many inspections await the rules."""
        mqtt = {"enabled": False} if self.publisher is None else self.publisher.status()
        return {"mqtt": mqtt, "alarm_rules": len(self._alarms.rules), "queued": self._queue.qsize()}

    def _run(self) -> None:
        name_os_thread()
        while True:
            row = self._queue.get()
            try:
                if row is None:
                    return
                for alarm in self._alarms.observe(_seen(row)):
                    self._fired(alarm)
            except Exception:  # a rule must never stop the thread that evaluates the others
                logger.exception("alarm rules failed on an inspection")
            finally:
                self._queue.task_done()

    def _fired(self, alarm: Alarm) -> None:
        ALARMS.labels(rule=alarm.rule).inc()
        logger.warning(
            "alarm %s on line %s: %d strips in %s", alarm.rule, alarm.line_id, alarm.count,
            alarm.window,
        )  # fmt: skip
        try:
            with self._engine.connect() as connection:
                insert_alarm(connection, alarm)
        except SQLAlchemyError as error:
            logger.error("alarm %s not stored: %s", alarm.alarm_id, error)
        if self.publisher is not None:
            self.publisher.offer(alarm_topic(self.topic_prefix, alarm.line_id), alarm.to_json())


def _seen(row: InspectionValues) -> StripSeen:
    return StripSeen(
        inspection_id=row.id,
        line_id=row.line_id or ANY_LINE,
        captured_at=row.captured_at or row.received_at,
        class_ids=frozenset(defect.class_id for defect in row.defects),
    )
