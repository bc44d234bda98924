"""GET /v1/inspections/export.csv and export.jsonl: the filtered history, streamed (see
``service.inspection.export``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from service.api.deps import ClassesDep, ReadRole, ServicesDep
from service.api.queries import HistoryQuery
from service.api.schemas import ErrorOut, InspectionOut
from service.inspection import history, history_csv

router = APIRouter(tags=["inspections"], dependencies=[ReadRole])

HistoryDep = Annotated[HistoryQuery, Query()]
_STREAM = {200: {"content": {"text/csv": {}}}, 422: {"model": ErrorOut}}


@router.get("/v1/inspections/export.csv", response_class=StreamingResponse, responses=_STREAM)
def export_csv(services: ServicesDep, classes: ClassesDep, query: HistoryDep) -> StreamingResponse:
    """The filtered inspections as ImageId,ClassId,EncodedPixels rows, newest first."""
    records = history(services.sessions, where=query.to_filter(classes))
    return _attachment(history_csv(records, services.classes_of), "text/csv", "inspections.csv")


@router.get("/v1/inspections/export.jsonl", response_class=StreamingResponse, responses=_STREAM)
def export_jsonl(
    services: ServicesDep, classes: ClassesDep, query: HistoryDep
) -> StreamingResponse:
    """The filtered inspections, one JSON object per line (as GET /v1/inspections/{id})."""
    lines = (
        InspectionOut.from_row(record).model_dump_json() + "\n"
        for record in history(services.sessions, where=query.to_filter(classes))
    )
    return _attachment(lines, "application/x-ndjson", "inspections.jsonl")


def _attachment(lines: Iterator[str], media_type: str, filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(lines, media_type=media_type, headers=headers)
