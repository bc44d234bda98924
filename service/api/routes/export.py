"""GET /v1/inspections/export.csv and export.jsonl: the filtered history, streamed.

The CSV is the Severstal submission format: one row per image and class (every class of the
model version that inspected it, empty ``EncodedPixels`` where it found nothing), ImageId
``<inspection_id>.png``, the name the review dataset gives the image.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from service.api.deps import ClassesDep, ReaderDep, Services, ServicesDep
from service.api.queries import HistoryQuery
from service.api.schemas import ErrorOut, InspectionOut
from service.db import InspectionFilter
from service.db.export import InspectionRecord, stream_inspections

router = APIRouter(tags=["inspections"])

HistoryDep = Annotated[HistoryQuery, Query()]
_STREAM = {200: {"content": {"text/csv": {}}}, 422: {"model": ErrorOut}}


@router.get("/v1/inspections/export.csv", response_class=StreamingResponse, responses=_STREAM)
def export_csv(
    caller: ReaderDep, services: ServicesDep, classes: ClassesDep, query: HistoryDep
) -> StreamingResponse:
    """The filtered inspections as ImageId,ClassId,EncodedPixels rows, newest first."""
    where = query.to_filter(classes)
    return _attachment(_csv_lines(services, where), "text/csv", "inspections.csv")


@router.get("/v1/inspections/export.jsonl", response_class=StreamingResponse, responses=_STREAM)
def export_jsonl(
    caller: ReaderDep, services: ServicesDep, classes: ClassesDep, query: HistoryDep
) -> StreamingResponse:
    """The filtered inspections, one JSON object per line (as GET /v1/inspections/{id})."""
    lines = (
        InspectionOut.from_row(record).model_dump_json() + "\n"
        for record in _records(services, query.to_filter(classes))
    )
    return _attachment(lines, "application/x-ndjson", "inspections.jsonl")


def image_id(record: InspectionRecord) -> str:
    return f"{record.id}.png"


def _records(services: Services, where: InspectionFilter) -> Iterator[InspectionRecord]:
    """Runs while the response streams, in its own session (the request's may be closed)."""
    with services.sessions() as session:
        yield from stream_inspections(session, where=where)


def _csv_lines(services: Services, where: InspectionFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ImageId", "ClassId", "EncodedPixels"])
    class_ids: dict[tuple[str, int], list[int]] = {}
    for record in _records(services, where):
        key = (record.model_name, record.model_version)
        if key not in class_ids:
            class_ids[key] = sorted(services.classes_of(*key))
        masks = {d.class_id: d.encoded_pixels for d in record.defects}
        for class_id in sorted({*class_ids[key], *masks}):
            writer.writerow([image_id(record), class_id, masks.get(class_id, "")])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _attachment(lines: Iterator[str], media_type: str, filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(lines, media_type=media_type, headers=headers)
