"""ORM tables of recorded inspections (SQLAlchemy 2 typed mappings; schemas live in the API).

The same definitions serve SQLite and Postgres; ``migrations/`` creates them and a test checks
that the migrations and these models agree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ID_LENGTH = 128
"""Longest camera, frame, line and coil id accepted (the API validates the same bound)."""

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    Postgres keeps ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC
    (which also sorts correctly as text) and come back marked UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Inspection(Base):
    """One strip image that went through the model, with where it came from and what it found."""

    __tablename__ = "inspections"
    __table_args__ = (
        UniqueConstraint("camera_id", "frame_id"),
        Index("ix_inspections_received_at_id", "received_at", "id"),
        # Each filter column leads an index ending in the listing order, so a filtered page is
        # one range scan with no sort (see migrations/versions/0002).
        Index("ix_inspections_camera_id_received_at_id", "camera_id", "received_at", "id"),
        Index("ix_inspections_line_id_received_at_id", "line_id", "received_at", "id"),
        Index("ix_inspections_coil_id_received_at_id", "coil_id", "received_at", "id"),
        # A coil's strips along its length (its map and roll marks).
        Index("ix_inspections_coil_id_position_m", "coil_id", "position_m"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    frame_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    line_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    coil_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    position_m: Mapped[float | None] = mapped_column(Double)
    """Metres from the coil's head, where the gateway knows it."""
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int]
    has_defect: Mapped[bool]
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_height: Mapped[int]
    image_width: Mapped[int]

    defects: Mapped[list[Defect]] = relationship(
        back_populates="inspection",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="Defect.class_id",
    )


class Defect(Base):
    """The mask of one defect class on one inspected strip (RLE as in DESIGN.md)."""

    __tablename__ = "defects"
    __table_args__ = (
        # Covers the class / area filters and the summaries' join without reading the masks.
        Index("ix_defects_inspection_id_class_id_area_px", "inspection_id", "class_id", "area_px"),
        Index("ix_defects_class_id", "class_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE")
    )
    class_id: Mapped[int]
    class_name: Mapped[str] = mapped_column(String(64))
    encoded_pixels: Mapped[str] = mapped_column(Text)
    area_px: Mapped[int]
    score: Mapped[float] = mapped_column(Double)
    # Inclusive pixel bounds: columns x, rows y.
    bbox_x_min: Mapped[int]
    bbox_y_min: Mapped[int]
    bbox_x_max: Mapped[int]
    bbox_y_max: Mapped[int]

    inspection: Mapped[Inspection] = relationship(back_populates="defects")

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return (self.bbox_x_min, self.bbox_y_min, self.bbox_x_max, self.bbox_y_max)


class InspectionHour(Base):
    """Inspections received in one UTC hour on one camera: the hourly rollup behind the defect
    summary, kept in the same transaction as every inspection (service/db/rollup.py)."""

    __tablename__ = "inspection_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    """``''`` for inspections without a line: a key column cannot be NULL on both databases."""
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    inspections: Mapped[int]
    with_defect: Mapped[int]


class DefectHour(Base):
    """Defects of one class found in one UTC hour on one camera, and their area: the per-class
    half of the hourly rollup. The class name is part of the key so that a class renamed by a
    new model version is summarised with the very name the inspections carry."""

    __tablename__ = "defect_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    class_id: Mapped[int] = mapped_column(primary_key=True)
    class_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    defects: Mapped[int]
    area_px: Mapped[int] = mapped_column(BigInteger)


class Review(Base):
    """A QA person's verdict on one inspection: each predicted defect confirmed or a false
    positive, and the defects the model missed. Reviews are never edited; the newest counts."""

    __tablename__ = "reviews"
    __table_args__ = (
        Index("ix_reviews_inspection_id_id", "inspection_id", "id"),
        Index("ix_reviews_reviewed_at", "reviewed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE")
    )
    reviewer: Mapped[str] = mapped_column(String(64))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verdicts: Mapped[dict[str, str]] = mapped_column(JSON)
    """Class id (as text: JSON keys) -> ``confirmed`` or ``false_positive``."""
    missed: Mapped[dict[str, str]] = mapped_column(JSON)
    """Class id (as text) -> RLE of the defect the model did not report."""


class Job(Base):
    """A compression job: what an admin asked for, and the queue's hold on it.

    ``attempts`` counts claims by workers; a worker holds the job while ``lease_expires_at`` is
    ahead and renews it with heartbeats (service/jobs/queue.py). The report is kept here, not in
    the worker's folder, so every API replica can serve it.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_created_at", "state", "created_at"),
        Index("ix_jobs_created_at_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    state: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(64))
    source_version: Mapped[int]
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result_version: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int]
    max_attempts: Mapped[int]
    lease_owner: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    report_png: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class JobEvent(Base):
    """One line of a job's event log (claimed, a step's progress, lease expired, ...); only
    ever appended."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempt: Mapped[int]
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Alarm(Base):
    """A defect alarm that fired: its rule's window held ``count`` strips with the defect, from
    ``first_inspection_id`` to ``last_inspection_id`` (no foreign keys: an alarm outlives the
    history's clean-up)."""

    __tablename__ = "alarms"
    __table_args__ = (
        Index("ix_alarms_fired_at_id", "fired_at", "id"),
        Index("ix_alarms_line_id_fired_at_id", "line_id", "fired_at", "id"),
        Index("ix_alarms_rule_fired_at_id", "rule", "fired_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    line_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    class_id: Mapped[int | None]
    count: Mapped[int]
    window: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_inspection_id: Mapped[uuid.UUID]
    last_inspection_id: Mapped[uuid.UUID]
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime())
