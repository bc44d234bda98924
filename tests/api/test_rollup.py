"""The hourly rollup on SQLite and Postgres: kept by every insert (API, spool replay), recounted by
the migration, and a summary read from it equal to one read from the inspections alone."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, event, select
from sqlalchemy.orm import Session

from service.db import (
    InspectionFilter,
    InspectionValues,
    insert_inspection,
    make_engine,
    make_session_factory,
    new_inspection,
)
from service.db.inspections import _defect_columns, _inspection_columns
from service.db.migrate import upgrade
from service.db.models import Defect, DefectHour, Inspection, InspectionHour
from service.db.rollup import rebuild_rollup
from service.db.summary import Summary, defect_summary
from service.spool import ResultRecorder, Spool
from service.spool.records import encode, key_of

T0 = datetime(2031, 6, 1, tzinfo=UTC)
"""After every other test's inspections: ranges from here see only this module's."""
HOURS = 60
NAMES = {1: "pits", 2: "crack", 3: "scratch", 4: "scale"}
LINES = ("L1", "L2", None)
INDIA = timezone(timedelta(hours=5, minutes=30))


@dataclass(frozen=True)
class _Defect:
    class_id: int
    class_name: str
    area_px: int
    encoded_pixels: str = "1 4"
    score: float = 0.9
    bbox: tuple[int, int, int, int] = (0, 0, 0, 3)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def cameras(engine: Engine) -> list[str]:
    """Three cameras of this run, with random inspections recorded through the write path."""
    prefix = uuid.uuid4().hex[:8]
    names = [f"{prefix}-c{k}" for k in range(3)]
    rng = random.Random(4)
    with engine.connect() as connection:
        for _ in range(400):
            insert_inspection(connection, _random_row(rng, rng.choice(names)))
    return names


def _random_row(rng: random.Random, camera_id: str, **overrides: Any) -> InspectionValues:
    """An inspection somewhere in the HOURS after T0; a fifth exactly on an hour's start."""
    hour = timedelta(hours=rng.randrange(HOURS))
    offset = timedelta(0) if rng.random() < 0.2 else timedelta(seconds=rng.random() * 3600)
    classes = rng.sample(sorted(NAMES), rng.choice((0, 0, 1, 2, 3)))
    defects = [_Defect(c, NAMES[c], rng.randrange(1, 5000)) for c in classes]
    if defects and rng.random() < 0.1:  # the same class twice, maybe under a renamed class
        name = NAMES[classes[0]]
        defects.append(_Defect(classes[0], rng.choice((name, name.upper())), 7))
    fields: dict[str, Any] = {
        "camera_id": camera_id,
        "frame_id": uuid.uuid4().hex,
        "line_id": rng.choice(LINES),
        "coil_id": rng.choice(("K1", "K2")),
        "captured_at": None,
        "received_at": T0 + hour + offset,
        "model_name": "probe",
        "model_version": 1,
        "image_height": 256,
        "image_width": 1600,
        "timings": {"total": 1.0},
        "defects": defects,
    }
    return new_inspection(**(fields | overrides))


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _both(engine: Engine, **query: Any) -> tuple[Summary, Summary, bool]:
    """The summary from the rollup, from the inspections alone, and whether the rollup was read."""
    with make_session_factory(engine)() as session, _statements(engine) as sent:
        from_rollup = defect_summary(session, **query)
    with make_session_factory(engine)() as session:
        raw = defect_summary(session, **query, use_rollup=False)
    return from_rollup, raw, any("defect_hours" in statement for statement in sent)


def _random_moment(rng: random.Random) -> datetime:
    """On an hour's start, within an hour, or a microsecond off; in UTC or India's time."""
    moment = T0 + timedelta(hours=rng.randrange(-2, HOURS + 2))
    moment += rng.choice(
        (timedelta(0), timedelta(microseconds=1), timedelta(seconds=rng.random() * 3600))
    )
    return moment.astimezone(INDIA) if rng.random() < 0.3 else moment


def test_random_summaries_from_the_rollup_equal_the_inspections(
    engine: Engine, cameras: list[str]
) -> None:
    rng = random.Random(7)
    read_rollup = 0
    for _ in range(60):
        since, until = sorted((_random_moment(rng), _random_moment(rng)))
        if since == until:
            continue
        where = InspectionFilter(
            line_id=rng.choice((None, None, "L1", "L2")),
            camera_id=rng.choice((None, None, *cameras)),
            since=since,
            until=until,
        )
        query = {
            "bucket": rng.choice(("hour", "day")),
            "group_by": rng.choice((None, "line", "camera")),
            "where": where,
        }
        from_rollup, raw, used = _both(engine, **query)
        assert from_rollup == raw, query
        read_rollup += used
    assert read_rollup > 40


def test_whole_range_by_line_includes_inspections_without_a_line(
    engine: Engine, cameras: list[str]
) -> None:
    where = InspectionFilter(since=T0, until=T0 + timedelta(hours=HOURS))
    from_rollup, raw, used = _both(engine, bucket="day", where=where, group_by="line")
    assert used and from_rollup == raw
    assert {bucket.group for bucket in raw.inspections} == {"L1", "L2", None}
    assert sum(bucket.inspections for bucket in raw.inspections) >= 400


def test_unbounded_ranges_of_one_camera(engine: Engine, cameras: list[str]) -> None:
    for since, until in ((None, None), (T0 + timedelta(minutes=90), None), (None, T0)):
        where = InspectionFilter(camera_id=cameras[1], since=since, until=until)
        from_rollup, raw, used = _both(engine, bucket="hour", where=where, group_by="camera")
        assert used and from_rollup == raw


@pytest.mark.parametrize(
    "where",
    [
        InspectionFilter(coil_id="K1", since=T0, until=T0 + timedelta(days=1)),
        InspectionFilter(class_id=2, since=T0, until=T0 + timedelta(days=1)),
        InspectionFilter(has_defect=True, since=T0, until=T0 + timedelta(days=1)),
        InspectionFilter(min_area=100, since=T0, until=T0 + timedelta(days=1)),
        InspectionFilter(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=55)),
    ],
)
def test_what_the_rollup_cannot_answer_reads_the_inspections(
    engine: Engine, cameras: list[str], where: InspectionFilter
) -> None:
    from_rollup, raw, used = _both(engine, bucket="hour", where=where)
    assert not used and from_rollup == raw and raw.inspections


def _rollup_rows(engine: Engine, cameras: list[str]) -> list[tuple[Any, ...]]:
    with make_session_factory(engine)() as session:
        return _rows(session, cameras)


def _rows(session: Session, cameras: list[str]) -> list[tuple[Any, ...]]:
    hours = select(InspectionHour).where(InspectionHour.camera_id.in_(cameras))
    defects = select(DefectHour).where(DefectHour.camera_id.in_(cameras))
    return [
        *(
            (h.hour, h.line_id, h.camera_id, h.inspections, h.with_defect)
            for h in session.scalars(hours.order_by(*InspectionHour.__table__.primary_key))
        ),
        *(
            (d.hour, d.line_id, d.camera_id, d.class_id, d.class_name, d.defects, d.area_px)
            for d in session.scalars(defects.order_by(*DefectHour.__table__.primary_key))
        ),
    ]


def test_a_recount_gives_the_rows_the_writes_kept(engine: Engine, cameras: list[str]) -> None:
    kept = _rollup_rows(engine, cameras)
    with engine.begin() as connection:
        rebuild_rollup(connection)
    assert _rollup_rows(engine, cameras) == kept
    assert len(kept) > HOURS


def test_a_duplicate_is_not_counted_twice(engine: Engine) -> None:
    camera, rng = uuid.uuid4().hex[:12], random.Random(1)
    first = _random_row(rng, camera, line_id=None, defects=[_Defect(3, "scratch", 10)])
    with engine.connect() as connection:
        assert insert_inspection(connection, first)[1]
    same_frame = _random_row(rng, camera, frame_id=first.frame_id)
    same_id = _random_row(rng, camera, inspection_id=first.id)
    for again in (same_frame, same_id):
        with engine.connect() as connection:
            assert not insert_inspection(connection, again)[1]
    hour = first.received_at.replace(minute=0, second=0, microsecond=0)
    assert _rollup_rows(engine, [camera]) == [
        (hour, "", camera, 1, 1),
        (hour, "", camera, 3, "scratch", 1, 10),
    ]


def test_spooled_results_are_counted_once_when_replayed(engine: Engine, tmp_path: Path) -> None:
    camera, rng = uuid.uuid4().hex[:12], random.Random(2)
    recorder = ResultRecorder(
        engine, make_session_factory(engine), Spool(tmp_path, key_of), replay_interval_s=3600
    )
    recorder.spool.open()
    rows = [_random_row(rng, camera) for _ in range(30)]
    with engine.connect() as connection:  # reached the database before the outage
        insert_inspection(connection, rows[0])
    for row in rows:
        recorder.spool.append(encode(row), key_of(encode(row)))
    assert recorder.replay() == len(rows) - 1
    recorder.spool.close()
    where = InspectionFilter(camera_id=camera, since=T0 - timedelta(minutes=1))
    from_rollup, raw, used = _both(engine, bucket="hour", where=where)
    assert used and from_rollup == raw
    assert sum(bucket.inspections for bucket in raw.inspections) == len(rows)


def _insert_as_at(engine: Engine, rows: list[InspectionValues]) -> None:
    """Insert ``rows`` into the tables as the database has them now (an older revision: only
    the columns it knows), not with the ORM of today's models."""
    present = MetaData()
    present.reflect(engine, only=["inspections"])
    known = set(present.tables["inspections"].c.keys())
    with engine.begin() as connection:
        for values in rows:
            columns = {k: v for k, v in _inspection_columns(values).items() if k in known}
            connection.execute(Inspection.__table__.insert(), columns)
            for defect in values.defects:
                connection.execute(Defect.__table__.insert(), _defect_columns(defect, values.id))


def test_the_migration_counts_the_inspections_already_recorded(fresh_database_url: str) -> None:
    upgrade(fresh_database_url, "0003")
    engine = make_engine(fresh_database_url)
    rng, cameras = random.Random(3), ["m-c0", "m-c1", "m-c2"]
    try:
        _insert_as_at(engine, [_random_row(rng, rng.choice(cameras)) for _ in range(150)])
        upgrade(fresh_database_url)
        where = InspectionFilter(since=T0, until=T0 + timedelta(hours=HOURS))
        from_rollup, raw, used = _both(engine, bucket="hour", where=where, group_by="line")
        assert used and from_rollup == raw
        assert sum(bucket.inspections for bucket in raw.inspections) == 150
    finally:
        engine.dispose()
