"""Request and response shapes of the API (pydantic), kept apart from the ORM models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from service.db.export import InspectionRecord
from service.db.models import ID_LENGTH, Inspection, Job, JobEvent, Review
from service.db.values import InspectionValues
from service.jobs.queue import JobState
from service.jobs.request import JobRequest
from service.store import Manifest

# Printable text only: Postgres refuses NUL in text, and ids end up in logs and CSV exports.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Id = Field(default=None, min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)
FrameId = Annotated[str, StringConstraints(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)]


def as_utc(value: datetime) -> datetime:
    """An aware UTC time; a time sent without an offset is taken as UTC."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as error:  # e.g. 9999-12-31T23:00-05:00 is past datetime.max
        raise ValueError("the time is out of range once converted to UTC") from error


UtcTime = Annotated[datetime, AfterValidator(as_utc)]
MAX_POSITION_M = 1_000_000.0
"""Metres: a coil is at most a few kilometres long; the bound keeps the column's values sane."""


class StripSource(BaseModel):
    """Where strips come from, sent as query parameters with the images."""

    camera_id: str = Field(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)
    line_id: str | None = Id
    coil_id: str | None = Id
    captured_at: UtcTime | None = Field(
        default=None, description="ISO 8601; without an offset it is taken as UTC"
    )
    position_m: float | None = Field(
        default=None,
        ge=0,
        le=MAX_POSITION_M,
        allow_inf_nan=False,
        description="metres from the coil's head to this strip, for the coil's map",
    )


class FrameQuery(StripSource):
    """One strip's source and the gateway's id of its frame."""

    frame_id: str | None = Id


class BatchQuery(StripSource):
    """Several strips' source and, optionally, one frame id per strip in the order of the parts."""

    frame_id: list[FrameId] = Field(
        default_factory=list, description="repeat once per image, in order, or leave out"
    )


class ModelRef(BaseModel):
    name: str
    version: int


class DefectOut(BaseModel):
    class_id: int
    class_name: str
    encoded_pixels: str = Field(description="RLE, column-major, 1-based (Severstal)")
    area_px: int
    score: float = Field(description="mean probability inside the mask")
    bbox: tuple[int, int, int, int] = Field(description="inclusive [x_min, y_min, x_max, y_max]")


class TimingsOut(BaseModel):
    """Milliseconds; ``total`` runs from the first body byte to the result (before storing)."""

    decode: float
    queue: float
    inference: float
    postprocess: float
    total: float


class InspectionOut(BaseModel):
    inspection_id: uuid.UUID
    camera_id: str
    frame_id: str | None
    line_id: str | None
    coil_id: str | None
    captured_at: datetime | None
    received_at: datetime
    position_m: float | None = None
    model: ModelRef
    has_defect: bool
    defects: list[DefectOut]

    @classmethod
    def fields_of(cls, row: Inspection | InspectionValues | InspectionRecord) -> dict[str, Any]:
        return {
            "inspection_id": row.id,
            "camera_id": row.camera_id,
            "frame_id": row.frame_id,
            "line_id": row.line_id,
            "coil_id": row.coil_id,
            "captured_at": row.captured_at,
            "received_at": row.received_at,
            "position_m": row.position_m,
            "model": ModelRef(name=row.model_name, version=row.model_version),
            "has_defect": row.has_defect,
            "defects": [
                DefectOut(
                    class_id=d.class_id,
                    class_name=d.class_name,
                    encoded_pixels=d.encoded_pixels,
                    area_px=d.area_px,
                    score=d.score,
                    bbox=d.bbox,
                )
                for d in row.defects
            ],
        }

    @classmethod
    def from_row(cls, row: Inspection | InspectionValues | InspectionRecord) -> InspectionOut:
        return cls(**cls.fields_of(row))


class InspectResponse(InspectionOut):
    timings_ms: TimingsOut

    @classmethod
    def from_row(cls, row: Inspection | InspectionValues) -> InspectResponse:
        return cls(**cls.fields_of(row), timings_ms=TimingsOut(**row.timings))


class BatchItemOut(BaseModel):
    """One image of a batch: its result, or the error /v1/inspect would have answered."""

    index: int = Field(description="position of the image part, from 0")
    status: int = Field(description="200, or the status of the error")
    replay: bool = Field(default=False, description="a stored result of a frame seen before")
    result: InspectResponse | None = None
    error: ErrorDetail | None = None


class BatchOut(BaseModel):
    items: list[BatchItemOut]


class InspectionPageOut(BaseModel):
    items: list[InspectionOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page")


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    classes: list[dict[str, Any]]
    input: dict[str, Any]
    architecture: dict[str, Any]
    precision: str = Field(description="float32, or int8 (quantized from its parent)")
    metrics: dict[str, Any]
    lineage: dict[str, Any]

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> VersionOut:
        data = manifest.model_dump(mode="json")
        return cls(**{name: data[name] for name in cls.model_fields})


class ModelOut(BaseModel):
    name: str
    aliases: dict[str, int]
    versions: list[VersionOut]


class LiveModelOut(ModelRef):
    alias: str


class AliasMoveIn(BaseModel):
    version: int = Field(ge=1, description="the version the alias is to point at")


class AliasOut(BaseModel):
    name: str
    alias: str
    version: int
    previous_version: int | None = Field(description="where the alias pointed before, if it did")
    live: LiveModelOut | None = Field(description="the version this process serves now")


class ModelsOut(BaseModel):
    live: LiveModelOut | None = Field(description="the version this process serves")
    models: list[ModelOut]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class ClassBucketOut(BaseModel):
    start: datetime = Field(description="start of the UTC hour or day")
    group: str | None = Field(description="the line or camera, when grouped")
    class_id: int
    class_name: str
    defects: int = Field(description="inspections with a defect of this class")
    area_px: int = Field(description="their defect pixels, summed")


class InspectionBucketOut(BaseModel):
    start: datetime
    group: str | None
    inspections: int
    with_defect: int


class SummaryOut(BaseModel):
    bucket: str
    group_by: str | None
    since: datetime
    until: datetime
    classes: list[ClassBucketOut]
    inspections: list[InspectionBucketOut]


class VerdictIn(BaseModel):
    class_id: int = Field(ge=1)
    verdict: Literal["confirmed", "false_positive"]


class MissedIn(BaseModel):
    class_id: int = Field(ge=1)
    encoded_pixels: str = Field(min_length=1, max_length=2_000_000, description="RLE")


class ReviewIn(BaseModel):
    """A verdict for every predicted defect, and the defects the model missed."""

    model_config = ConfigDict(extra="forbid")

    defects: list[VerdictIn] = Field(default_factory=list, max_length=64)
    missed: list[MissedIn] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _one_per_class(self) -> ReviewIn:
        for name in ("defects", "missed"):
            ids = [item.class_id for item in getattr(self, name)]
            if len(ids) != len(set(ids)):
                raise ValueError(f"{name}: one entry per class")
        return self


class ReviewOut(ReviewIn):
    review_id: int
    inspection_id: uuid.UUID
    reviewer: str
    reviewed_at: datetime

    @classmethod
    def from_row(cls, row: Review) -> ReviewOut:
        return cls(
            review_id=row.id,
            inspection_id=row.inspection_id,
            reviewer=row.reviewer,
            reviewed_at=row.reviewed_at,
            defects=[VerdictIn(class_id=int(k), verdict=v) for k, v in row.verdicts.items()],
            missed=[MissedIn(class_id=int(k), encoded_pixels=v) for k, v in row.missed.items()],
        )


class JobProgressOut(BaseModel):
    """Where a running job is: step k of K, the fine-tuning epoch, the latest loss and
    validation Dice, and the current net's MACs and params (``source``: the source's)."""

    stage: str | None = Field(
        default=None,
        description="the last event: baseline, pruned, epoch, step, publishing (tuning the "
        "post-processing, scoring the test split, exporting, timing) or published",
    )
    step: int | None = None
    steps: int | None = None
    epoch: int | None = None
    epochs: float | None = Field(
        default=None, description="recovery epochs after each pruning step (fractions allowed)"
    )
    finetune_epochs: int | None = Field(
        default=None, description="epochs of the final fine-tune (the step after the last)"
    )
    loss: float | None = None
    val_dice: float | None = None
    macs: int | None = None
    params: int | None = None
    fraction: float = Field(default=0.0, description="share of the steps completed")
    source: dict[str, Any] | None = Field(default=None, description="val_dice, macs, params")


class JobEventOut(BaseModel):
    at: datetime
    attempt: int
    kind: str
    data: dict[str, Any]


class JobResultOut(BaseModel):
    model: str
    version: int


class JobOut(BaseModel):
    job_id: uuid.UUID
    state: JobState
    model: str
    source_version: int = Field(description="the version pruned (an alias is resolved once)")
    request: JobRequest
    attempts: int = Field(description="claims by workers so far")
    max_attempts: int
    cancel_requested: bool
    worker: str | None = Field(description="the worker holding the job while it runs")
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: JobProgressOut | None
    result: JobResultOut | None = Field(description="the published version, once succeeded")
    error: str | None
    events: list[JobEventOut] | None = Field(
        default=None, description="the event log, oldest first (in a single job's view)"
    )

    @classmethod
    def from_row(cls, job: Job, events: list[JobEvent] | None = None) -> JobOut:
        return cls(
            job_id=job.id,
            state=job.state,  # type: ignore[arg-type]
            model=job.model_name,
            source_version=job.source_version,
            request=JobRequest.model_validate(job.request),
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            cancel_requested=job.cancel_requested,
            worker=job.lease_owner,
            lease_expires_at=job.lease_expires_at,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            progress=None if job.progress is None else JobProgressOut(**job.progress),
            result=(
                None
                if job.result_version is None
                else JobResultOut(model=job.model_name, version=job.result_version)
            ),
            error=job.error,
            events=None
            if events is None
            else [
                JobEventOut(at=e.at, attempt=e.attempt, kind=e.kind, data=e.data) for e in events
            ],
        )


class JobsOut(BaseModel):
    items: list[JobOut] = Field(description="newest first")
