"""Streaming reads of many inspections (exports): one server-side cursor, constant memory.

The ORM's eager loading would hold every row; here inspections and their defects come from one
outer join in listing order, fetched ``BATCH`` rows at a time (``yield_per``: a server-side
cursor on Postgres), and are regrouped per inspection as they go by.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

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


_INSPECTION = {column.name: getattr(Inspection, column.name) for column in fields(InspectionHeader)}
"""The header's fields, each read from the column of the same name."""
_DEFECT = {
    "class_id": Defect.class_id,
    "class_name": Defect.class_name,
    "encoded_pixels": Defect.encoded_pixels,
    "area_px": Defect.area_px,
    "score": Defect.score,
}
_BBOX = (Defect.bbox_x_min, Defect.bbox_y_min, Defect.bbox_x_max, Defect.bbox_y_max)
DEFECT_PREFIX = "defect_"


def stream_inspections(session: Session, *, where: InspectionFilter) -> Iterator[InspectionRecord]:
    """The filtered inspections, newest first, each with its defects by class."""
    query = (
        select(
            *(column.label(name) for name, column in _INSPECTION.items()),
            *(column.label(DEFECT_PREFIX + name) for name, column in _DEFECT.items()),
            *(column.label(f"{DEFECT_PREFIX}bbox_{k}") for k, column in enumerate(_BBOX)),
        )
        .outerjoin(Defect, Defect.inspection_id == Inspection.id)
        .where(*where.conditions())
        .order_by(Inspection.received_at.desc(), Inspection.id.desc(), Defect.class_id)
        .execution_options(yield_per=BATCH)
    )
    current: InspectionRecord | None = None
    for row in session.execute(query).mappings():
        if current is None or current.id != row["id"]:
            if current is not None:
                yield current
            current = InspectionRecord(**{name: row[name] for name in _INSPECTION})
        if row[f"{DEFECT_PREFIX}class_id"] is not None:
            current.defects.append(_defect(row))
    if current is not None:
        yield current


def _defect(row: Mapping[str, Any]) -> DefectValues:
    x_min, y_min, x_max, y_max = (row[f"{DEFECT_PREFIX}bbox_{k}"] for k in range(len(_BBOX)))
    return DefectValues(
        **{name: row[DEFECT_PREFIX + name] for name in _DEFECT}, bbox=(x_min, y_min, x_max, y_max)
    )
