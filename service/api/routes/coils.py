"""Coils: the coils seen, one coil's strips along its length with roll marks, and its map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ReadRole, ServicesDep, SessionDep
from service.api.errors import ApiError
from service.api.line_schemas import (
    CoilDefectOut,
    CoilListOut,
    CoilOut,
    CoilStripOut,
    CoilSummaryOut,
    RollMarkOut,
)
from service.api.queries import MAX_PAGE, check_range
from service.api.schemas import ID_LENGTH, ID_PATTERN, ErrorOut, Id, UtcTime
from service.db.coils import list_coils
from service.events.coils import CoilView, coil_map_png, coil_view

router = APIRouter(tags=["line events"], dependencies=[ReadRole])

CoilId = Annotated[str, Path(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)]


class CoilListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: str | None = Id
    since: UtcTime | None = Field(default=None, description="strips received at or after")
    until: UtcTime | None = Field(default=None, description="strips received before")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)


class CoilQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: str | None = Id


@router.get("/v1/coils", response_model=CoilListOut, responses={422: {"model": ErrorOut}})
def coils(session: SessionDep, query: Annotated[CoilListQuery, Query()]) -> CoilListOut:
    """Coils with strips in the range, the most recently seen first, defects per class."""
    check_range(query.since, query.until)
    found = list_coils(session, **query.model_dump())
    return CoilListOut(
        items=[CoilSummaryOut.model_validate(c, from_attributes=True) for c in found]
    )


@router.get("/v1/coils/{coil_id}", response_model=CoilOut, responses={404: {"model": ErrorOut}})
def coil(coil_id: CoilId, session: SessionDep, query: Annotated[CoilQuery, Query()]) -> CoilOut:
    """The coil's strips along its length, defects per class, suspected roll marks."""
    view = _view(session, coil_id, query.line_id)
    return CoilOut(
        coil_id=view.coil_id,
        line_id=view.line_id,
        strips=[
            CoilStripOut(
                inspection_id=strip.id,
                frame_id=strip.frame_id,
                position_m=strip.position_m,
                captured_at=strip.captured_at,
                defects=[
                    CoilDefectOut.model_validate(d, from_attributes=True) for d in strip.defects
                ],
            )
            for strip in view.strips
        ],
        counts=view.counts,
        roll_marks=[RollMarkOut(**mark.to_json()) for mark in view.roll_marks],
    )


@router.get(
    "/v1/coils/{coil_id}/map.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorOut}},
)
def coil_map(
    coil_id: CoilId,
    session: SessionDep,
    services: ServicesDep,
    query: Annotated[CoilQuery, Query()],
) -> Response:
    """The coil drawn along its length: each defect in its class colour, roll marks flagged."""
    view = _view(session, coil_id, query.line_id)
    inspector = services.models.inspector
    classes = {} if inspector is None else {c.id: c.name for c in inspector.manifest.classes}
    return Response(coil_map_png(view, classes), media_type="image/png")


def _view(session: SessionDep, coil_id: str, line_id: str | None) -> CoilView:
    view = coil_view(session, coil_id=coil_id, line_id=line_id)
    if view is None:
        raise ApiError(404, "coil_not_found", f"no strip of coil {coil_id!r} was recorded")
    return view
