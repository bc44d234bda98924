"""GET /v1/inspections (filtered, newest first, one keyset page at a time) and one by id."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import ClassesDep, ReadRole, SessionDep
from service.api.errors import ApiError
from service.api.queries import PageQuery
from service.api.schemas import ErrorOut, InspectionOut, InspectionPageOut
from service.db import get_inspection, list_inspections

router = APIRouter(tags=["inspections"], dependencies=[ReadRole])


@router.get(
    "/v1/inspections", response_model=InspectionPageOut, responses={422: {"model": ErrorOut}}
)
def list_recent(
    session: SessionDep,
    classes: ClassesDep,
    query: Annotated[PageQuery, Query()],
) -> InspectionPageOut:
    """Recorded inspections, filtered, newest first; follow ``next_cursor`` for older ones."""
    where = query.to_filter(classes)
    page = list_inspections(session, limit=query.limit, cursor=query.cursor, where=where)
    return InspectionPageOut(
        items=[InspectionOut.from_row(row) for row in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/v1/inspections/{inspection_id}",
    response_model=InspectionOut,
    responses={404: {"model": ErrorOut}},
)
def get_one(inspection_id: uuid.UUID, session: SessionDep) -> InspectionOut:
    """One recorded inspection."""
    row = get_inspection(session, inspection_id=inspection_id)
    if row is None:
        raise ApiError(404, "inspection_not_found", f"no inspection {inspection_id}")
    return InspectionOut.from_row(row)
