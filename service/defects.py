"""A found defect as plain values: what inference reports, and what spooled and exported
results carry (the database's ORM row is ``service.db.models.Defect``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DefectValues:
    class_id: int
    class_name: str
    encoded_pixels: str
    area_px: int
    score: float
    bbox: tuple[int, int, int, int]
    """Inclusive pixel bounds (x_min, y_min, x_max, y_max): x is the column, y the row."""
