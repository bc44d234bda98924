"""POST /v1/inspect and /v1/inspect/batch: camera strips in, RLE defect masks out, each result
recorded once (see ``service.inspection``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from service import inspection
from service.api.deps import FrameDep, InspectRole, ModelDep, RecordingDep, UploadDep, UploadsDep
from service.api.errors import IMAGE_STATUS, ApiError
from service.api.request_log import annotate
from service.api.schemas import (
    BatchItemOut,
    BatchOut,
    BatchQuery,
    ErrorDetail,
    ErrorOut,
    InspectResponse,
)
from service.inference.decode import MEDIA_TYPES, ImageRejected
from service.inspection import Frame, FrameIdsMismatch, Inspected

router = APIRouter(tags=["inspect"], dependencies=[InspectRole])

REPLAY_HEADER = "Idempotent-Replay"
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_FORM = {"schema": {"type": "object", "properties": {"image": _BINARY}}}
_BATCH_FORM = {
    "schema": {"type": "object", "properties": {"image": {"type": "array", "items": _BINARY}}}
}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {**{kind: _BINARY for kind in MEDIA_TYPES}, "multipart/form-data": _FORM},
    }
}
_BATCH_BODY_DOC = {
    "requestBody": {"required": True, "content": {"multipart/form-data": _BATCH_FORM}}
}
_BATCH_DESCRIPTION = """\
Inspect several strips of one camera: one result per ``image`` part, in order.

The body is ``multipart/form-data`` with one ``image`` part per strip (each with a file
name, as client libraries send files). The query parameters apply to every strip; frame
ids, if any, are the ``frame_id`` query parameter repeated once per part in the same order
(``?camera_id=c&frame_id=f1&frame_id=f2``). A strip that cannot be inspected gets its own
error (the status and code /v1/inspect would answer) without failing the others; a frame
seen before is replayed. Up to 32 strips, within the body-size limit."""
_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 413, 415, 422, 503)}

BatchDep = Annotated[BatchQuery, Query()]


@router.post(
    "/v1/inspect", response_model=InspectResponse, responses=_ERRORS, openapi_extra=_BODY_DOC
)
async def inspect_strip(
    frame: FrameDep, upload: UploadDep, model: ModelDep, recording: RecordingDep, request: Request
) -> Response:
    """Inspect one strip; a (camera_id, frame_id) seen before returns the stored result."""
    inspected = await inspection.inspect_strip(
        model,
        recording,
        Frame(**frame.model_dump()),
        upload.strip,
        received_at=upload.received_at,
        started=upload.started,
    )
    row = inspected.row
    model_ref = {"name": row.model_name, "version": row.model_version}
    annotate(request, model=model_ref, replay=inspected.replayed, timings_ms=row.timings)
    headers = {REPLAY_HEADER: "true"} if inspected.replayed else None
    return _json(InspectResponse.from_row(row), headers)


@router.post(
    "/v1/inspect/batch",
    response_model=BatchOut,
    responses=_ERRORS,
    openapi_extra=_BATCH_BODY_DOC,
    description=_BATCH_DESCRIPTION,
)
async def inspect_batch(
    query: BatchDep, uploads: UploadsDep, model: ModelDep, recording: RecordingDep, request: Request
) -> Response:
    """Inspect several strips of one camera: one result per ``image`` part, in order."""
    try:
        outcomes = await inspection.inspect_batch(
            model,
            recording,
            uploads.strips,
            source=Frame(**query.model_dump(exclude={"frame_id"})),
            frame_ids=query.frame_id,
            received_at=uploads.received_at,
            started=uploads.started,
        )
    except FrameIdsMismatch as error:
        raise ApiError(422, "frame_ids_mismatch", str(error)) from error
    annotate(request, model={"name": model.name, "version": model.version}, images=len(outcomes))
    return _json(BatchOut(items=[_batch_item(i, outcome) for i, outcome in enumerate(outcomes)]))


def _batch_item(index: int, outcome: Inspected | ImageRejected) -> BatchItemOut:
    """One strip of a batch: its result, or the error /v1/inspect would have answered."""
    if isinstance(outcome, ImageRejected):
        detail = ErrorDetail(code=outcome.code, message=str(outcome))
        return BatchItemOut(index=index, status=IMAGE_STATUS.get(type(outcome), 422), error=detail)
    result = InspectResponse.from_row(outcome.row)
    return BatchItemOut(index=index, status=200, replay=outcome.replayed, result=result)


def _json(body: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """``body`` serialised by pydantic-core directly: FastAPI's response_model path dumps,
    re-validates and json.dumps it, 0.5 ms more for a result with large masks (the decorator's
    response_model still documents the shape)."""
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)
