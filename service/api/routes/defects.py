"""GET /v1/defects/summary: defect trends per class by hour or day, per line or camera."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import ReadRole, SessionDep
from service.api.queries import SummaryQuery
from service.api.schemas import (
    ClassBucketOut,
    ErrorOut,
    InspectionBucketOut,
    SummaryOut,
)
from service.db.summary import defect_summary

router = APIRouter(tags=["defects"], dependencies=[ReadRole])


@router.get("/v1/defects/summary", response_model=SummaryOut, responses={422: {"model": ErrorOut}})
def summary(session: SessionDep, query: Annotated[SummaryQuery, Query()]) -> SummaryOut:
    """Defects and defect area per class, and inspections made, per time bucket (and group)."""
    since, until = query.window()
    where = query.to_filter(since, until)
    result = defect_summary(session, bucket=query.bucket, where=where, group_by=query.group_by)
    return SummaryOut(
        bucket=query.bucket,
        group_by=query.group_by,
        since=since,
        until=until,
        classes=[ClassBucketOut(**asdict(bucket)) for bucket in result.classes],
        inspections=[InspectionBucketOut(**asdict(bucket)) for bucket in result.inspections],
    )
