"""Data access for inspections: plain functions with keyword-only arguments.

Callable alike from the API, the worker, scripts and tests; each write commits its own unit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Select, bindparam, insert, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.filters import InspectionFilter
from service.db.keyset import decode_cursor, encode_cursor
from service.db.models import Defect, Inspection
from service.db.rollup import count_inspection
from service.db.values import DefectFields, InspectionValues


@dataclass(frozen=True)
class InspectionPage:
    items: list[Inspection]
    next_cursor: str | None


def new_inspection(
    *,
    camera_id: str,
    frame_id: str | None,
    line_id: str | None,
    coil_id: str | None,
    captured_at: datetime | None,
    received_at: datetime,
    model_name: str,
    model_version: int,
    image_height: int,
    image_width: int,
    timings: Mapping[str, float],
    defects: Sequence[DefectFields],
    inspection_id: uuid.UUID | None = None,
    position_m: float | None = None,
) -> InspectionValues:
    """A new inspection, not yet stored.

    Its id is drawn here, before any write, so that a result kept in the spool while the
    database is away is stored later under the id its client already has.
    """
    return InspectionValues(
        id=inspection_id or uuid.uuid4(),
        camera_id=camera_id,
        frame_id=frame_id,
        line_id=line_id,
        coil_id=coil_id,
        captured_at=captured_at,
        received_at=received_at,
        position_m=position_m,
        model_name=model_name,
        model_version=model_version,
        has_defect=bool(defects),
        timings=dict(timings),
        image_height=image_height,
        image_width=image_width,
        defects=list(defects),
    )


def insert_inspection(
    connection: Connection, row: InspectionValues
) -> tuple[InspectionValues | Inspection, bool]:
    """Store ``row`` with its defects in a transaction of its own: an idempotent insert.

    Returns ``(row, True)`` when written, or ``(existing, False)`` when its id or its
    (camera_id, frame_id) was already recorded: the primary key and the unique constraint, not
    a prior read, decide, so concurrent retries of one frame and replays of a spooled result
    that did reach the database still write it once. The hourly rollup is counted in the same
    transaction, so it rolls back with a duplicate.

    The rows go in as Core inserts built once, on a plain connection: no unit of work, no ORM
    session, no statement built per call, all of which cost CPU on every request.
    """
    try:
        with connection.begin():
            # A duplicate fails on this first statement, before any rollup row is locked.
            connection.execute(_INSERT_INSPECTION, [_inspection_columns(row)])
            if row.defects:
                connection.execute(
                    _INSERT_DEFECT, [_defect_columns(defect, row.id) for defect in row.defects]
                )
            count_inspection(connection, row)
    except IntegrityError:
        existing = _recorded_instead(connection, row)
        if existing is None:
            raise
        return existing, False
    return row, True


def _recorded_instead(connection: Connection, row: InspectionValues) -> Inspection | None:
    """The inspection already stored under ``row``'s id or frame, after a refused insert."""
    with Session(bind=connection) as session:
        existing = session.get(Inspection, row.id)
        if existing is None and row.frame_id is not None:
            existing = find_inspection(session, camera_id=row.camera_id, frame_id=row.frame_id)
        return existing


_INSPECTION_COLUMNS = tuple(column.key for column in Inspection.__table__.columns)
_INSERT_INSPECTION = insert(Inspection.__table__)
_INSERT_DEFECT = insert(Defect.__table__)


def _inspection_columns(row: InspectionValues) -> dict[str, object]:
    return {column: getattr(row, column) for column in _INSPECTION_COLUMNS}


def _defect_columns(defect: DefectFields, inspection_id: uuid.UUID) -> dict[str, object]:
    x_min, y_min, x_max, y_max = defect.bbox
    return {
        "inspection_id": inspection_id,
        "class_id": defect.class_id,
        "class_name": defect.class_name,
        "encoded_pixels": defect.encoded_pixels,
        "area_px": defect.area_px,
        "score": defect.score,
        "bbox_x_min": x_min,
        "bbox_y_min": y_min,
        "bbox_x_max": x_max,
        "bbox_y_max": y_max,
    }


_OF_FRAME = (
    Inspection.camera_id == bindparam("camera_id"),
    Inspection.frame_id == bindparam("frame_id"),
)
"""The criteria of a camera's frame (the key of the unique constraint on inspections), as bound
parameters: the frame queries below are built once, not on every request (building a statement
costs more than running it on SQLite)."""
_INSPECTION_OF_FRAME = select(Inspection).where(*_OF_FRAME)
_ID_OF_FRAME = select(Inspection.id).where(*_OF_FRAME)


def find_inspection(session: Session, *, camera_id: str, frame_id: str) -> Inspection | None:
    """The inspection recorded for a camera's frame, if any."""
    frame = {"camera_id": camera_id, "frame_id": frame_id}
    return session.scalars(_INSPECTION_OF_FRAME, frame).one_or_none()


def frame_inspection_id(
    connection: Connection, *, camera_id: str, frame_id: str
) -> uuid.UUID | None:
    """The id of the inspection recorded for a camera's frame, if any.

    A Core query for the request path, where almost every frame is new: a miss through a
    connection costs a fraction of one through an ORM session built per call.
    """
    frame = {"camera_id": camera_id, "frame_id": frame_id}
    return connection.execute(_ID_OF_FRAME, frame).scalar_one_or_none()


def get_inspection(session: Session, *, inspection_id: uuid.UUID) -> Inspection | None:
    return session.get(Inspection, inspection_id)


def list_inspections(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    where: InspectionFilter | None = None,
) -> InspectionPage:
    """Newest first by (received_at, id), filtered; ``cursor`` continues after a previous page.

    Keyset pagination: each page costs one index range scan however deep it is, and rows
    recorded while paging neither repeat nor shift later pages (every row that existed when
    paging began is returned exactly once).
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    _without_parallel_workers(session)
    query = newest_first(where or InspectionFilter())
    if cursor is not None:
        received_at, last_id = decode_cursor(cursor)
        # One row-value comparison: both databases start the index scan at the cursor, and
        # Postgres estimates its selectivity once (an equivalent OR of two comparisons was
        # estimated ~10x too selective, which turned deep pages into bitmap scans and sorts).
        query = query.where(
            tuple_(Inspection.received_at, Inspection.id) < tuple_(received_at, last_id)
        )
    rows = list(session.scalars(query.limit(limit + 1)))
    next_cursor = encode_inspection_cursor(rows[limit - 1]) if len(rows) > limit else None
    return InspectionPage(items=rows[:limit], next_cursor=next_cursor)


def _without_parallel_workers(session: Session) -> None:
    """On Postgres, plan this transaction's page without parallel workers.

    A page is at most a thousand rows, found by one index range scan; starting workers costs
    more than the scan (in the history benchmark a deep page's Gather Merge spent most of its
    time waiting for its workers). ``SET LOCAL`` ends with the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


def newest_first(where: InspectionFilter) -> Select[tuple[Inspection]]:
    """The filtered inspections in listing order (newest first, then by id)."""
    return (
        select(Inspection)
        .where(*where.conditions())
        .order_by(Inspection.received_at.desc(), Inspection.id.desc())
    )


def encode_inspection_cursor(row: Inspection) -> str:
    return encode_cursor(row.received_at, row.id)
