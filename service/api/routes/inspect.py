"""POST /v1/inspect: a camera strip in, RLE defect masks out, the result recorded once."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

from service.api.deps import FrameDep, ModelDep, SessionDep, UploadDep
from service.api.schemas import ErrorOut, InspectResponse
from service.db import Inspection, find_inspection, record_inspection
from service.inference.decode import MEDIA_TYPES
from service.metrics import observe_inspection

router = APIRouter(tags=["inspect"])

REPLAY_HEADER = "Idempotent-Replay"
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            **{kind: _BINARY for kind in MEDIA_TYPES},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"image": _BINARY}}},
        },
    }
}
_ERRORS = {status: {"model": ErrorOut} for status in (400, 413, 415, 422, 503)}


def _replay(response: Response, row: Inspection) -> InspectResponse:
    response.headers[REPLAY_HEADER] = "true"
    return InspectResponse.from_row(row)


@router.post(
    "/v1/inspect", response_model=InspectResponse, responses=_ERRORS, openapi_extra=_BODY_DOC
)
def inspect_strip(
    frame: FrameDep, upload: UploadDep, model: ModelDep, session: SessionDep, response: Response
) -> InspectResponse:
    """Inspect one strip; a (camera_id, frame_id) seen before returns the stored result."""
    if frame.frame_id is not None:
        stored = find_inspection(session, camera_id=frame.camera_id, frame_id=frame.frame_id)
        if stored is not None:
            return _replay(response, stored)
    findings = model.inspect_image(upload.data, upload.content_type)
    timings = {
        **findings.timings_ms,
        "queue": 0.0,
        "total": (time.perf_counter() - upload.started) * 1000.0,
    }
    row, created = record_inspection(
        session,
        **frame.model_dump(),
        received_at=upload.received_at,
        model_name=model.name,
        model_version=model.version,
        image_height=model.shape[0],
        image_width=model.shape[1],
        timings={name: round(ms, 3) for name, ms in timings.items()},
        defects=findings.defects,
    )
    if not created:  # a concurrent retry of the same frame was stored first
        return _replay(response, row)
    observe_inspection(model.name, model.version, (d.class_name for d in findings.defects))
    return InspectResponse.from_row(row)
