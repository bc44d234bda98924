"""The results database on SQLite and Postgres: migrations match the models, data access."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select

from service.db import (
    Base,
    Inspection,
    InvalidCursor,
    frame_inspection_id,
    insert_inspection,
    list_inspections,
    make_engine,
    make_session_factory,
    new_inspection,
)
from service.db.keyset import decode_cursor
from service.db.migrate import upgrade


@dataclass(frozen=True)
class _Defect:
    class_id: int = 2
    class_name: str = "crack"
    encoded_pixels: str = "1 3"
    area_px: int = 3
    score: float = 0.9
    bbox: tuple[int, int, int, int] = (0, 0, 0, 2)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)  # also the second run on a migrated database: a no-op
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _record(engine: Engine, **overrides: object) -> tuple[Inspection, bool]:
    fields: dict[str, object] = {
        "camera_id": "cam-db",
        "frame_id": uuid.uuid4().hex,
        "line_id": "line-1",
        "coil_id": None,
        "captured_at": datetime(2025, 1, 1, tzinfo=UTC),
        "received_at": datetime.now(UTC),
        "model_name": "probe",
        "model_version": 1,
        "image_height": 256,
        "image_width": 1600,
        "timings": {"total": 1.0},
        "defects": [_Defect()],
    } | overrides
    with engine.connect() as connection:
        return insert_inspection(connection, new_inspection(**fields))  # type: ignore[arg-type]


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    indexes = {index["name"] for index in inspect(engine).get_indexes("inspections")}
    assert {
        "ix_inspections_received_at_id",
        "ix_inspections_camera_id_received_at_id",
        "ix_inspections_line_id_received_at_id",
        "ix_inspections_coil_id_received_at_id",
    } <= indexes
    assert "ix_defects_class_id" in {i["name"] for i in inspect(engine).get_indexes("defects")}


def test_record_round_trips_with_utc_times_and_defects(engine: Engine) -> None:
    row, created = _record(engine, captured_at=datetime(2025, 1, 1, 3, tzinfo=UTC))
    assert created
    with make_session_factory(engine)() as session:
        stored = session.get(Inspection, row.id)
        assert stored is not None
        assert stored.captured_at == datetime(2025, 1, 1, 3, tzinfo=UTC)
        assert stored.received_at.tzinfo is not None
        assert stored.has_defect is True
        assert [(d.class_id, d.bbox) for d in stored.defects] == [(2, (0, 0, 0, 2))]


def test_the_same_frame_is_recorded_once(engine: Engine) -> None:
    frame = uuid.uuid4().hex
    first, created = _record(engine, frame_id=frame)
    second, created_again = _record(engine, frame_id=frame, defects=[])
    assert created and not created_again
    assert second.id == first.id and second.has_defect is True


def test_a_frame_s_inspection_id_is_found_by_camera_and_frame(engine: Engine) -> None:
    frame = uuid.uuid4().hex
    with engine.connect() as connection:
        assert frame_inspection_id(connection, camera_id="cam-db", frame_id=frame) is None
    row, _ = _record(engine, frame_id=frame)
    with engine.connect() as connection:
        assert frame_inspection_id(connection, camera_id="cam-db", frame_id=frame) == row.id
        assert frame_inspection_id(connection, camera_id="other", frame_id=frame) is None


def _after_everything(engine: Engine) -> datetime:
    """A day after the newest inspection other tests left in the shared database."""
    with make_session_factory(engine)() as session:
        newest = session.scalar(select(func.max(Inspection.received_at)))
    return (newest or datetime(2030, 1, 1, tzinfo=UTC)) + timedelta(days=1)


def test_listing_pages_by_received_at_then_id(engine: Engine) -> None:
    base = _after_everything(engine)
    same_time = [_record(engine, received_at=base)[0].id for _ in range(3)]
    newest = _record(engine, received_at=base + timedelta(seconds=1))[0].id
    with make_session_factory(engine)() as session:
        first = list_inspections(session, limit=2)
        second = list_inspections(session, limit=2, cursor=first.next_cursor)
    assert [row.id for row in first.items] == [newest, max(same_time)]
    assert [row.id for row in second.items] == sorted(same_time, reverse=True)[1:]


def test_cursor_is_checked() -> None:
    for bad in ("", "!!!", "bm90fGh4", "MjAyNS0wMS0wMXwxMjM"):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)
