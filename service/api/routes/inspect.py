"""POST /v1/inspect and /v1/inspect/batch: camera strips in, RLE defect masks out, each result
recorded once."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.body import Image, Uploads, read_uploads
from service.api.deps import (
    FinishingDep,
    FrameDep,
    ImagesDep,
    InspectorDep,
    ModelDep,
    ResultsDep,
    ServicesDep,
    UploadDep,
)
from service.api.errors import IMAGE_STATUS, ApiError
from service.api.request_log import annotate
from service.api.schemas import (
    BatchItemOut,
    BatchOut,
    BatchQuery,
    ErrorDetail,
    ErrorOut,
    FrameQuery,
    InspectResponse,
)
from service.db import Inspection, InspectionValues, new_inspection
from service.images import ImageArchive
from service.inference.batcher import BatchResult
from service.inference.decode import MEDIA_TYPES, RAW_MEDIA_TYPE, ImageRejected
from service.inference.inspector import Decoded, Inspector
from service.metrics import observe_inspection
from service.spool import ResultRecorder

router = APIRouter(tags=["inspect"])

REPLAY_HEADER = "Idempotent-Replay"
MAX_BATCH_IMAGES = 32
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
_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 413, 415, 422, 503)}


@dataclass(frozen=True)
class _Finisher:
    """Where strips become recorded results: the results, the archive of received strips, and
    the limiter that lets only ``POSTPROCESS_THREADS`` strips be post-processed and recorded at
    once.

    On a CPU-bound host every core serves the session's runs; more Python threads than that
    only fight over the GIL and preempt the session's threads mid-run. Measured with 8 clients
    on 2 cores: one at a time used 5-20 ms less CPU per strip and served 1-16% more strips per
    second than up to 40 (four pairs of runs, the host's speed drifting between them).
    """

    results: ResultRecorder
    archive: ImageArchive
    limiter: CapacityLimiter


async def get_finisher(
    results: ResultsDep, archive: ImagesDep, finishing: FinishingDep
) -> _Finisher:
    return _Finisher(results, archive, finishing)


async def get_uploads(request: Request, services: ServicesDep) -> Uploads:
    limit = services.settings.max_body_bytes
    return await read_uploads(request, limit=limit, max_images=MAX_BATCH_IMAGES)


UploadsDep = Annotated[Uploads, Depends(get_uploads)]
FinisherDep = Annotated[_Finisher, Depends(get_finisher)]
BatchDep = Annotated[BatchQuery, Query()]


@router.post(
    "/v1/inspect", response_model=InspectResponse, responses=_ERRORS, openapi_extra=_BODY_DOC
)
async def inspect_strip(
    caller: InspectorDep,
    frame: FrameDep,
    upload: UploadDep,
    model: ModelDep,
    finisher: FinisherDep,
    request: Request,
) -> Response:
    """Inspect one strip; a (camera_id, frame_id) seen before returns the stored result."""
    image = Image(upload.content_type, upload.data)
    row, replay = await _inspect(model, finisher, frame, image, upload.started, upload.received_at)
    model_ref = {"name": row.model_name, "version": row.model_version}
    annotate(request, model=model_ref, replay=replay, timings_ms=row.timings)
    return _json(InspectResponse.from_row(row), {REPLAY_HEADER: "true"} if replay else None)


def _json(body: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """``body`` serialised by pydantic-core directly: FastAPI's response_model path dumps,
    re-validates and json.dumps it, 0.5 ms more for a result with large masks (the decorator's
    response_model still documents the shape)."""
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


@router.post(
    "/v1/inspect/batch", response_model=BatchOut, responses=_ERRORS, openapi_extra=_BATCH_BODY_DOC
)
async def inspect_batch(
    caller: InspectorDep,
    source: BatchDep,
    uploads: UploadsDep,
    model: ModelDep,
    finisher: FinisherDep,
    request: Request,
) -> Response:
    """Inspect several strips of one camera: one result per ``image`` part, in order.

    The body is ``multipart/form-data`` with one ``image`` part per strip (each with a file
    name, as client libraries send files). The query parameters apply to every strip; frame
    ids, if any, are the ``frame_id`` query parameter repeated once per part in the same order
    (``?camera_id=c&frame_id=f1&frame_id=f2``). A strip that cannot be inspected gets its own
    error (the status and code /v1/inspect would answer) without failing the others; a frame
    seen before is replayed. Up to 32 strips, within the body-size limit.
    """
    images = uploads.images
    frame_ids: list[str | None] = [*source.frame_id] or [None] * len(images)
    if len(frame_ids) != len(images):
        raise ApiError(
            422,
            "frame_ids_mismatch",
            f"{len(frame_ids)} frame_id values for {len(images)} images: send one per image, "
            "in the order of the parts, or none",
        )
    common = source.model_dump(exclude={"frame_id"})
    items = await asyncio.gather(
        *(
            _batch_item(
                index, model, finisher, FrameQuery(**common, frame_id=frame_id), image, uploads
            )
            for index, (image, frame_id) in enumerate(zip(images, frame_ids, strict=True))
        )
    )
    annotate(request, model={"name": model.name, "version": model.version}, images=len(items))
    return _json(BatchOut(items=items))


async def _batch_item(
    index: int,
    model: Inspector,
    finisher: _Finisher,
    frame: FrameQuery,
    image: Image,
    uploads: Uploads,
) -> BatchItemOut:
    """One strip of a batch request."""
    try:
        row, replay = await _inspect(
            model, finisher, frame, image, uploads.started, uploads.received_at
        )
    except ImageRejected as error:
        detail = ErrorDetail(code=error.code, message=str(error))
        return BatchItemOut(index=index, status=IMAGE_STATUS.get(type(error), 422), error=detail)
    return BatchItemOut(
        index=index, status=200, replay=replay, result=InspectResponse.from_row(row)
    )


async def _inspect(
    model: Inspector,
    finisher: _Finisher,
    frame: FrameQuery,
    image: Image,
    started: float,
    received_at: datetime,
) -> tuple[Inspection | InspectionValues, bool]:
    """One strip through the model and into the results: ``(row, replayed)``.

    A frame this process recorded lately is looked up first (a gateway's retry: no model run).
    Any other frame is taken as new without a query: where it was in fact recorded before (by
    another process, or before a restart), the unique constraint refuses the second write and
    the stored result is returned, one model run later. A stored frame whose body no longer
    decodes is still answered with its stored result.
    """
    results = finisher.results
    if frame.frame_id is not None and results.recorded_lately(
        camera_id=frame.camera_id, frame_id=frame.frame_id
    ):
        stored = await _stored_result(results, frame)
        if stored is not None:
            return stored, True
    try:
        decoded = await _decode(model, image)
    except ImageRejected:
        stored = await _stored_result(results, frame)
        if stored is None:
            raise
        return stored, True
    result = await model.infer(decoded)
    finish = functools.partial(
        _conclude_and_record,
        model,
        finisher,
        frame,
        image,
        decoded,
        result,
        started,
        received_at,
    )
    row, created = await anyio.to_thread.run_sync(finish, limiter=finisher.limiter)
    return row, not created  # not created: recorded before, or by a concurrent retry


async def _stored_result(
    results: ResultRecorder, frame: FrameQuery
) -> Inspection | InspectionValues | None:
    if frame.frame_id is None:
        return None
    return await run_in_threadpool(results.find, camera_id=frame.camera_id, frame_id=frame.frame_id)


async def _decode(model: Inspector, image: Image) -> Decoded:
    """A raw buffer right here on the event loop: a view and one normalisation pass (about 0.2
    ms per strip) cost less than the hop to a worker thread and back. An encoded image (ms of
    decompression) in a worker thread, announced so that a forming batch waits for it."""
    if image.content_type == RAW_MEDIA_TYPE:
        return model.decode(image.data, image.content_type)
    with model.announce():
        return await run_in_threadpool(model.decode, image.data, image.content_type)


def _conclude_and_record(
    model: Inspector,
    finisher: _Finisher,
    frame: FrameQuery,
    image: Image,
    decoded: Decoded,
    result: BatchResult,
    started: float,
    received_at: datetime,
) -> tuple[Inspection | InspectionValues, bool]:
    """Post-process, record, and hand a new result's strip to the archive's writer, in one
    worker-thread hop (a background task after the response cost a hop of its own)."""
    findings = model.conclude(decoded, result)
    timings = {**findings.timings_ms, "total": (time.perf_counter() - started) * 1000.0}
    row, created = finisher.results.record(
        new_inspection(
            **frame.model_dump(),
            received_at=received_at,
            model_name=model.name,
            model_version=model.version,
            image_height=model.shape[0],
            image_width=model.shape[1],
            timings={name: round(ms, 3) for name, ms in timings.items()},
            defects=findings.defects,
        )
    )
    if created:
        observe_inspection(model.name, model.version, (d.class_name for d in findings.defects))
        finisher.archive.offer(
            inspection_id=row.id,
            received_at=row.received_at,
            has_defect=row.has_defect,
            data=image.data,
            content_type=image.content_type,
        )
    return row, created
