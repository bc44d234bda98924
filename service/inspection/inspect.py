"""A camera strip inspected and recorded once: a frame seen before is replayed, any other is
decoded, run through the live model, post-processed, recorded, and its strip offered to the
archive.

Plain values in and out: the HTTP layer turns requests into these and the results (or the
errors raised here) into responses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime

import anyio.to_thread

from service.db import Inspection, InspectionValues, new_inspection
from service.images import ImageArchive
from service.inference.batcher import BatchResult
from service.inference.decode import RAW_MEDIA_TYPE, ImageRejected
from service.inference.inspector import Decoded, Inspector
from service.metrics import observe_inspection
from service.spool import ResultRecorder


@dataclass(frozen=True)
class ReceivedStrip:
    """One strip as a gateway sent it: its media type (the part's, for multipart) and bytes."""

    content_type: str
    data: bytes


@dataclass(frozen=True)
class Frame:
    """Where a strip comes from, and the gateway's id of its frame (retries repeat it)."""

    camera_id: str
    frame_id: str | None = None
    line_id: str | None = None
    coil_id: str | None = None
    captured_at: datetime | None = None
    position_m: float | None = None


@dataclass(frozen=True)
class Recording:
    """Where strips become recorded results: the results, the archive of received strips, and
    the executor whose ``POSTPROCESS_THREADS`` threads post-process and record them, so that
    only that many strips are at it at once.

    On a CPU-bound host every core serves the session's runs; more Python threads than that
    only fight over the GIL and preempt the session's threads mid-run: fewer strips finished at
    once cost less CPU per strip and serve more strips a second than many.
    """

    results: ResultRecorder
    archive: ImageArchive
    executor: Executor


@dataclass(frozen=True)
class Inspected:
    """A strip's recorded result."""

    row: Inspection | InspectionValues
    replayed: bool
    """The result was recorded before (a retry of the frame), not made by this request."""


class FrameIdsMismatch(ValueError):
    """A batch whose frame ids do not pair one to one with its strips."""


async def inspect_strip(
    model: Inspector,
    recording: Recording,
    frame: Frame,
    strip: ReceivedStrip,
    *,
    received_at: datetime,
    started: float,
) -> Inspected:
    """One strip through the model and into the results.

    A frame this process recorded lately is looked up first (a gateway's retry: no model run).
    Any other frame is taken as new without a query: where it was in fact recorded before (by
    another process, or before a restart), the unique constraint refuses the second write and
    the stored result is returned, one model run later. A stored frame whose body no longer
    decodes is still answered with its stored result. ``started`` is the
    ``time.perf_counter()`` the result's total time runs from.
    """
    results = recording.results
    if frame.frame_id is not None and results.recorded_lately(
        camera_id=frame.camera_id, frame_id=frame.frame_id
    ):
        stored = await _stored_result(results, frame)
        if stored is not None:
            return Inspected(stored, replayed=True)
    try:
        decoded = await _decode(model, strip)
    except ImageRejected:
        stored = await _stored_result(results, frame)
        if stored is None:
            raise
        return Inspected(stored, replayed=True)
    output = await model.infer(decoded)
    finish = functools.partial(
        _postprocess_and_record,
        model,
        recording,
        frame,
        strip,
        decoded,
        output,
        started,
        received_at,
    )
    row, created = await asyncio.get_running_loop().run_in_executor(recording.executor, finish)
    return Inspected(row, replayed=not created)  # recorded before, or by a concurrent retry


async def inspect_batch(
    model: Inspector,
    recording: Recording,
    strips: Sequence[ReceivedStrip],
    *,
    source: Frame,
    frame_ids: Sequence[str],
    received_at: datetime,
    started: float,
) -> list[Inspected | ImageRejected]:
    """Several strips of one ``source``, each with its frame id in order (or none at all):
    each one's result, or the rejection of its image, which does not fail the others."""
    frames = _batch_frames(source, frame_ids, len(strips))
    return list(
        await asyncio.gather(
            *(
                _result_or_rejection(model, recording, frame, strip, received_at, started)
                for frame, strip in zip(frames, strips, strict=True)
            )
        )
    )


def _batch_frames(source: Frame, frame_ids: Sequence[str], count: int) -> list[Frame]:
    if not frame_ids:
        return [source] * count
    if len(frame_ids) != count:
        raise FrameIdsMismatch(
            f"{len(frame_ids)} frame_id values for {count} images: send one per image, "
            "in the order of the parts, or none"
        )
    return [dataclasses.replace(source, frame_id=frame_id) for frame_id in frame_ids]


async def _result_or_rejection(
    model: Inspector,
    recording: Recording,
    frame: Frame,
    strip: ReceivedStrip,
    received_at: datetime,
    started: float,
) -> Inspected | ImageRejected:
    try:
        return await inspect_strip(
            model, recording, frame, strip, received_at=received_at, started=started
        )
    except ImageRejected as error:
        return error


async def _stored_result(
    results: ResultRecorder, frame: Frame
) -> Inspection | InspectionValues | None:
    if frame.frame_id is None:
        return None
    find = functools.partial(results.find, camera_id=frame.camera_id, frame_id=frame.frame_id)
    return await anyio.to_thread.run_sync(find)


async def _decode(model: Inspector, strip: ReceivedStrip) -> Decoded:
    """A raw buffer right here on the event loop: a view and one normalisation pass (about 0.2
    ms per strip) cost less than the hop to a worker thread and back. An encoded image (ms of
    decompression) in a worker thread, announced so that a forming batch waits for it."""
    if strip.content_type == RAW_MEDIA_TYPE:
        return model.decode(strip.data, strip.content_type)
    with model.announce():
        return await anyio.to_thread.run_sync(model.decode, strip.data, strip.content_type)


def _postprocess_and_record(
    model: Inspector,
    recording: Recording,
    frame: Frame,
    strip: ReceivedStrip,
    decoded: Decoded,
    output: BatchResult,
    started: float,
    received_at: datetime,
) -> tuple[Inspection | InspectionValues, bool]:
    """Post-process, record, and hand a new result's strip to the archive's writer, in one
    worker-thread hop (a background task after the response cost a hop of its own)."""
    findings = model.postprocess(decoded, output)
    timings = {**findings.timings_ms, "total": (time.perf_counter() - started) * 1000.0}
    row, created = recording.results.record(
        new_inspection(
            camera_id=frame.camera_id,
            frame_id=frame.frame_id,
            line_id=frame.line_id,
            coil_id=frame.coil_id,
            captured_at=frame.captured_at,
            received_at=received_at,
            position_m=frame.position_m,
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
        recording.archive.offer(
            inspection_id=row.id,
            received_at=row.received_at,
            has_defect=row.has_defect,
            data=strip.data,
            content_type=strip.content_type,
        )
    return row, created
