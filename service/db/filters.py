"""Which inspections a history query is about: one filter shared by listing, export and
summaries, turned into SQL conditions that the indexes of ``migrations/`` serve."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists

from service.db.models import Defect, Inspection


@dataclass(frozen=True)
class InspectionFilter:
    """Every field is optional; ``since`` is inclusive, ``until`` exclusive (received_at, UTC).

    ``class_id`` and ``min_area`` together ask for a defect of that class at least that large;
    ``min_area`` alone for any defect at least that large.
    """

    line_id: str | None = None
    camera_id: str | None = None
    coil_id: str | None = None
    class_id: int | None = None
    has_defect: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_area: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        for column, value in (
            (Inspection.line_id, self.line_id),
            (Inspection.camera_id, self.camera_id),
            (Inspection.coil_id, self.coil_id),
            (Inspection.has_defect, self.has_defect),
        ):
            if value is not None:
                where.append(column == value)
        if self.since is not None:
            where.append(Inspection.received_at >= self.since)
        if self.until is not None:
            where.append(Inspection.received_at < self.until)
        if self.class_id is not None or self.min_area is not None:
            # Correlated to the inspection only: a summary joins defects in its own FROM too.
            defect = exists().where(Defect.inspection_id == Inspection.id, *self._defect())
            where.append(defect.correlate(Inspection))
        return where

    def _defect(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.class_id is not None:
            where.append(Defect.class_id == self.class_id)
        if self.min_area is not None:
            where.append(Defect.area_px >= self.min_area)
        return where
