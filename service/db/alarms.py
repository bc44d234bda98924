"""Data access for fired alarms: store one, list them newest first by keyset pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, tuple_
from sqlalchemy.orm import Session

from service.db.keyset import decode_cursor, encode_cursor
from service.db.models import Alarm as AlarmRow
from service.events.alarms import Alarm

_INSERT_ALARM = insert(AlarmRow.__table__)


@dataclass(frozen=True)
class AlarmPage:
    items: list[AlarmRow]
    next_cursor: str | None


def insert_alarm(connection: Connection, alarm: Alarm) -> None:
    """Store ``alarm`` in a transaction of its own."""
    with connection.begin():
        connection.execute(
            _INSERT_ALARM,
            [
                {
                    "id": alarm.alarm_id,
                    "rule": alarm.rule,
                    "line_id": alarm.line_id,
                    "class_id": alarm.class_id,
                    "count": alarm.count,
                    "window": alarm.window,
                    "first_inspection_id": alarm.first_inspection_id,
                    "last_inspection_id": alarm.last_inspection_id,
                    "fired_at": alarm.fired_at,
                }
            ],
        )


def list_alarms(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    line_id: str | None = None,
    rule: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AlarmPage:
    """Newest first by (fired_at, id); ``since`` inclusive, ``until`` exclusive."""
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    query = select(AlarmRow).order_by(AlarmRow.fired_at.desc(), AlarmRow.id.desc())
    for column, value in ((AlarmRow.line_id, line_id), (AlarmRow.rule, rule)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AlarmRow.fired_at >= since)
    if until is not None:
        query = query.where(AlarmRow.fired_at < until)
    if cursor is not None:
        fired_at, last_id = decode_cursor(cursor)
        query = query.where(tuple_(AlarmRow.fired_at, AlarmRow.id) < tuple_(fired_at, last_id))
    rows = list(session.scalars(query.limit(limit + 1)))
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = None if last is None else encode_cursor(last.fired_at, last.id)
    return AlarmPage(items=rows[:limit], next_cursor=next_cursor)
