"""GET /v1/alarms: the defect alarms that fired, newest first, one keyset page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ReadRole, SessionDep
from service.api.line_schemas import AlarmOut, AlarmPageOut
from service.api.queries import MAX_PAGE, check_range
from service.api.schemas import ErrorOut, Id, UtcTime
from service.db.alarms import list_alarms

router = APIRouter(tags=["line events"], dependencies=[ReadRole])


class AlarmQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: str | None = Id
    rule: str | None = Field(default=None, min_length=1, max_length=64)
    since: UtcTime | None = Field(default=None, description="fired at or after (ISO 8601)")
    until: UtcTime | None = Field(default=None, description="fired before (ISO 8601)")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200, description="a page's next_cursor")


@router.get("/v1/alarms", response_model=AlarmPageOut, responses={422: {"model": ErrorOut}})
def alarms(session: SessionDep, query: Annotated[AlarmQuery, Query()]) -> AlarmPageOut:
    """Fired alarms, filtered, newest first; follow ``next_cursor`` for older ones."""
    check_range(query.since, query.until)
    page = list_alarms(session, **query.model_dump())
    return AlarmPageOut(
        items=[AlarmOut.from_row(row) for row in page.items],
        next_cursor=page.next_cursor,
    )
