"""One inspection as one line of JSON in the spool, and back to its values."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from service.db import Inspection, InspectionValues, new_inspection
from service.defects import DefectValues

FORMAT = 1
"""Written into every record; a record of another format is refused, not guessed at."""

Key = tuple[str, str]
"""(camera_id, frame_id): what makes a frame's result unique."""


class RecordError(ValueError):
    """A line that is not a spooled inspection of this format."""


def encode(row: InspectionValues) -> bytes:
    """The row as one compact JSON line, newline included."""
    record = {
        "format": FORMAT,
        "inspection_id": str(row.id),
        "camera_id": row.camera_id,
        "frame_id": row.frame_id,
        "line_id": row.line_id,
        "coil_id": row.coil_id,
        "captured_at": None if row.captured_at is None else row.captured_at.isoformat(),
        "received_at": row.received_at.isoformat(),
        "position_m": row.position_m,
        "model_name": row.model_name,
        "model_version": row.model_version,
        "image_height": row.image_height,
        "image_width": row.image_width,
        "timings": row.timings,
        "defects": [
            {
                "class_id": d.class_id,
                "class_name": d.class_name,
                "encoded_pixels": d.encoded_pixels,
                "area_px": d.area_px,
                "score": d.score,
                "bbox": list(d.bbox),
            }
            for d in row.defects
        ],
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> InspectionValues:
    """A row equal to the one ``encode`` was given; ``RecordError`` for anything else."""
    record = _parse(line)
    try:
        captured_at = record["captured_at"]
        return new_inspection(
            inspection_id=uuid.UUID(record["inspection_id"]),
            camera_id=record["camera_id"],
            frame_id=record["frame_id"],
            line_id=record["line_id"],
            coil_id=record["coil_id"],
            captured_at=None if captured_at is None else _utc(captured_at),
            received_at=_utc(record["received_at"]),
            position_m=record.get("position_m"),  # absent from records spooled before it existed
            model_name=record["model_name"],
            model_version=record["model_version"],
            image_height=record["image_height"],
            image_width=record["image_width"],
            timings=record["timings"],
            defects=[
                DefectValues(**{**defect, "bbox": tuple(defect["bbox"])})
                for defect in record["defects"]
            ],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RecordError(f"not a spooled inspection: {error!r}") from error


def key_of(line: bytes) -> Key | None:
    """The (camera_id, frame_id) of a record, None for a frame without id."""
    record = _parse(line)
    camera_id, frame_id = record.get("camera_id"), record.get("frame_id")
    if not isinstance(camera_id, str) or not isinstance(frame_id, str | None):
        raise RecordError("a spooled inspection without a valid camera_id or frame_id")
    return None if frame_id is None else (camera_id, frame_id)


def key_of_row(row: Inspection | InspectionValues) -> Key | None:
    return None if row.frame_id is None else (row.camera_id, row.frame_id)


def _parse(line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordError(f"not JSON: {error}") from error
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise RecordError(f"not a spooled inspection of format {FORMAT}")
    return record


def _utc(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"a time without offset: {text!r}")
    return stamp
