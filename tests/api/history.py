"""Seeded inspection history for the QA tests: rows written straight through the data layer,
with chosen times, lines, cameras, coils and defects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.db import insert_inspection, new_inspection

T0 = datetime(2025, 3, 1, tzinfo=UTC)
CLASS_NAMES = {1: "pits", 2: "crack", 3: "scratch", 4: "scale"}


@dataclass(frozen=True)
class SeedDefect:
    class_id: int
    area_px: int
    encoded_pixels: str = "1 4"
    score: float = 0.9
    bbox: tuple[int, int, int, int] = (0, 0, 0, 3)

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.class_id]


def engine_of(client: TestClient) -> Engine:
    return client.app.state.services.engine  # type: ignore[attr-defined,no-any-return]


def seed(
    client: TestClient,
    *,
    minutes: float,
    line_id: str = "L1",
    camera_id: str = "C1",
    coil_id: str | None = None,
    defects: tuple[SeedDefect, ...] = (),
) -> str:
    """Record one inspection received ``minutes`` after T0; returns its id."""
    row = new_inspection(
        camera_id=camera_id,
        frame_id=uuid.uuid4().hex,
        line_id=line_id,
        coil_id=coil_id,
        captured_at=None,
        received_at=T0 + timedelta(minutes=minutes),
        model_name="probe",
        model_version=1,
        image_height=256,
        image_width=1600,
        timings={"total": 1.0},
        defects=list(defects),
    )
    with engine_of(client).connect() as connection:
        insert_inspection(connection, row)
    return str(row.id)
