"""Streaming reads of many inspections (exports): one server-side cursor, constant memory.

The ORM's eager loading would hold every row; here inspections and their defects come from one
outer join in listing order, fetched ``BATCH`` rows at a time (``yield_per``: a server-side
cursor on Postgres), and are regrouped per inspection as they go by.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.filters import InspectionFilter
from service.db.models import Defect, Inspection
from service.db.values import InspectionHeader
from service.defects import DefectValues

BATCH = 1000


@dataclass(frozen=True)
class InspectionRecord(InspectionHeader):
    """An inspection as exported: plain values, no session attached."""

    defects: list[DefectValues] = field(default_factory=list)


_INSPECTION = (
    Inspection.id,
    Inspection.camera_id,
    Inspection.frame_id,
    Inspection.line_id,
    Inspection.coil_id,
    Inspection.captured_at,
    Inspection.received_at,
    Inspection.model_name,
    Inspection.model_version,
    Inspection.has_defect,
)
_DEFECT = (
    Defect.class_id,
    Defect.class_name,
    Defect.encoded_pixels,
    Defect.area_px,
    Defect.score,
    Defect.bbox_x_min,
    Defect.bbox_y_min,
    Defect.bbox_x_max,
    Defect.bbox_y_max,
)


def stream_inspections(session: Session, *, where: InspectionFilter) -> Iterator[InspectionRecord]:
    """The filtered inspections, newest first, each with its defects by class."""
    query = (
        select(*_INSPECTION, *_DEFECT)
        .outerjoin(Defect, Defect.inspection_id == Inspection.id)
        .where(*where.conditions())
        .order_by(Inspection.received_at.desc(), Inspection.id.desc(), Defect.class_id)
        .execution_options(yield_per=BATCH)
    )
    current: InspectionRecord | None = None
    for row in session.execute(query):
        if current is None or current.id != row[0]:
            if current is not None:
                yield current
            current = InspectionRecord(*row[: len(_INSPECTION)])
        class_id, name, pixels, area, score, *bbox = row[len(_INSPECTION) :]
        if class_id is not None:
            current.defects.append(DefectValues(class_id, name, pixels, area, score, tuple(bbox)))
    if current is not None:
        yield current
