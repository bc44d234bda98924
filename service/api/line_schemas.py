"""Response schemas of the line-event endpoints: alarms and coils."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AlarmOut(BaseModel):
    alarm_id: uuid.UUID
    rule: str
    line_id: str
    class_id: int | None = Field(description="the rule's class; null: any defect")
    count: int = Field(description="strips with the defect in the window when it fired")
    window: dict[str, float | int] = Field(description='{"strips": n} or {"seconds": s}')
    first_inspection_id: uuid.UUID
    last_inspection_id: uuid.UUID
    fired_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> AlarmOut:
        """From a stored alarm (``service.db.models.Alarm``)."""
        fields = {name: getattr(row, name) for name in cls.model_fields if name != "alarm_id"}
        return cls(alarm_id=row.id, **fields)


class AlarmPageOut(BaseModel):
    items: list[AlarmOut]
    next_cursor: str | None = Field(description="pass as cursor for the next (older) page")


class CoilSummaryOut(BaseModel):
    coil_id: str
    line_id: str | None
    strips: int
    first_received_at: datetime
    last_received_at: datetime
    defects: dict[str, int] = Field(description="class name -> strips with such a defect")


class CoilListOut(BaseModel):
    items: list[CoilSummaryOut]


class CoilDefectOut(BaseModel):
    class_id: int
    class_name: str
    area_px: int
    bbox: tuple[int, int, int, int]


class CoilStripOut(BaseModel):
    inspection_id: uuid.UUID
    frame_id: str | None
    position_m: float | None
    captured_at: datetime | None
    defects: list[CoilDefectOut]


class RollMarkOut(BaseModel):
    class_id: int
    pitch_m: float = Field(description="distance between recurrences: the roll's circumference")
    occurrences: int
    positions_m: list[float]


class CoilOut(BaseModel):
    coil_id: str
    line_id: str | None
    strips: list[CoilStripOut] = Field(description="along the coil: by position_m, else by time")
    counts: dict[str, int] = Field(description="class name -> strips with such a defect")
    roll_marks: list[RollMarkOut]
