"""QA reviews: POST/GET /v1/inspections/{id}/review, and GET /v1/reviews/dataset.tar, the
reviewed strips as a Severstal-format training set (unpack it and ``train --dataset`` it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from service.api.deps import ClassesDep, ReaderDep, Services, ServicesDep, SessionDep
from service.api.errors import ApiError
from service.api.queries import HistoryQuery
from service.api.schemas import ErrorOut, ReviewIn, ReviewOut
from service.db import Inspection, get_inspection
from service.db.reviews import add_review, corrected_masks, latest_review, reviewed
from service.images.dataset import TrainingImage, training_tar

router = APIRouter(tags=["reviews"])

SKIPPED_HEADER = "X-Skipped-Without-Image"


@router.post(
    "/v1/inspections/{inspection_id}/review",
    response_model=ReviewOut,
    status_code=201,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def review(
    caller: ReaderDep,
    inspection_id: uuid.UUID,
    verdict: ReviewIn,
    session: SessionDep,
    services: ServicesDep,
) -> ReviewOut:
    """Judge each predicted defect and add the missed ones; the newest review counts."""
    inspection = _inspection(session, inspection_id)
    row = add_review(
        session,
        inspection=inspection,
        reviewer=caller.name if caller is not None else "anonymous",
        reviewed_at=datetime.now(UTC),
        verdicts={item.class_id: item.verdict for item in verdict.defects},
        missed={item.class_id: item.encoded_pixels for item in verdict.missed},
        classes=set(services.classes_of(inspection.model_name, inspection.model_version)),
    )
    return ReviewOut.from_row(row)


@router.get(
    "/v1/inspections/{inspection_id}/review",
    response_model=ReviewOut,
    responses={404: {"model": ErrorOut}},
)
def newest_review(caller: ReaderDep, inspection_id: uuid.UUID, session: SessionDep) -> ReviewOut:
    """The newest review of an inspection."""
    _inspection(session, inspection_id)
    row = latest_review(session, inspection_id=inspection_id)
    if row is None:
        raise ApiError(404, "review_not_found", f"inspection {inspection_id} is not reviewed")
    return ReviewOut.from_row(row)


@router.get(
    "/v1/reviews/dataset.tar",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-tar": {}}}, 422: {"model": ErrorOut}},
)
def dataset(
    caller: ReaderDep,
    session: SessionDep,
    services: ServicesDep,
    classes: ClassesDep,
    query: Annotated[HistoryQuery, Query()],
) -> StreamingResponse:
    """The reviewed inspections (filtered) whose strips are kept, with corrected masks."""
    images, skipped = _training_images(session, services, query, classes)
    headers = {
        "Content-Disposition": 'attachment; filename="reviewed.tar"',
        SKIPPED_HEADER: str(skipped),
    }
    return StreamingResponse(
        training_tar(images, classes or {}), media_type="application/x-tar", headers=headers
    )


def _training_images(
    session: Session, services: Services, query: HistoryQuery, classes: dict[int, str] | None
) -> tuple[list[TrainingImage], int]:
    images, skipped = [], 0
    for inspection, row in reviewed(session, where=query.to_filter(classes)):
        kept = services.images.find(inspection_id=inspection.id, received_at=inspection.received_at)
        if kept is None:
            skipped += 1
            continue
        shape = (inspection.image_height, inspection.image_width)
        images.append(
            TrainingImage(str(inspection.id), kept, shape, corrected_masks(inspection, row))
        )
    return images, skipped


def _inspection(session: Session, inspection_id: uuid.UUID) -> Inspection:
    inspection = get_inspection(session, inspection_id=inspection_id)
    if inspection is None:
        raise ApiError(404, "inspection_not_found", f"no inspection {inspection_id}")
    return inspection
