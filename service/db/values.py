"""Inspections as plain values: a new one before it is stored, and exported ones (reads that go
through the ORM come back as ORM rows)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class DefectFields(Protocol):
    """What a defect must carry to be recorded (service.defects.DefectValues has these)."""

    @property
    def class_id(self) -> int: ...
    @property
    def class_name(self) -> str: ...
    @property
    def encoded_pixels(self) -> str: ...
    @property
    def area_px(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def bbox(self) -> tuple[int, int, int, int]: ...


@dataclass(frozen=True)
class InspectionHeader:
    """An inspection's own columns that every plain-values form of it carries."""

    id: uuid.UUID
    camera_id: str
    frame_id: str | None
    line_id: str | None
    coil_id: str | None
    captured_at: datetime | None
    received_at: datetime
    position_m: float | None
    model_name: str
    model_version: int
    has_defect: bool


@dataclass(frozen=True)
class InspectionValues(InspectionHeader):
    """An inspection to record: what the API makes of a strip, and what the spool keeps.

    Plain values rather than ORM rows: the rows go in as Core inserts, so an ``Inspection``
    with a ``Defect`` per class (the relationship firing its events on every one) would be built
    only to be read back. The field names are the columns'.
    """

    timings: dict[str, float]
    image_height: int
    image_width: int
    defects: Sequence[DefectFields]
