"""QA reviews: POST/GET /v1/inspections/{id}/review, and GET /v1/reviews/dataset.tar, the
reviewed strips as a Severstal-format training set (unpack it and ``train --dataset`` it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from service.api.deps import ClassesDep, ReaderKeyDep, ReadRole, ServicesDep, SessionDep
from service.api.errors import ApiError
from service.api.queries import HistoryQuery
from service.api.schemas import ErrorOut, ReviewIn, ReviewOut
from service.db import Inspection, get_inspection
from service.db.reviews import add_review, latest_review
from service.images.dataset import training_tar
from service.inspection import review_dataset

router = APIRouter(tags=["reviews"], dependencies=[ReadRole])

SKIPPED_HEADER = "X-Skipped-Without-Image"


@router.post(
    "/v1/inspections/{inspection_id}/review",
    response_model=ReviewOut,
    status_code=201,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def review(
    caller: ReaderKeyDep,
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
def newest_review(inspection_id: uuid.UUID, session: SessionDep) -> ReviewOut:
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
    session: SessionDep,
    services: ServicesDep,
    classes: ClassesDep,
    query: Annotated[HistoryQuery, Query()],
) -> StreamingResponse:
    """The reviewed inspections (filtered) whose strips are kept, with corrected masks."""
    reviewed = review_dataset(session, services.images, where=query.to_filter(classes))
    headers = {
        "Content-Disposition": 'attachment; filename="reviewed.tar"',
        SKIPPED_HEADER: str(reviewed.skipped),
    }
    return StreamingResponse(
        training_tar(reviewed.images, classes or {}),
        media_type="application/x-tar",
        headers=headers,
    )


def _inspection(session: Session, inspection_id: uuid.UUID) -> Inspection:
    inspection = get_inspection(session, inspection_id=inspection_id)
    if inspection is None:
        raise ApiError(404, "inspection_not_found", f"no inspection {inspection_id}")
    return inspection
