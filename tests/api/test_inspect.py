"""POST /v1/inspect through the real app: every body type, the response, idempotent replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service import rle
from service.db import Inspection, insert_inspection, new_inspection
from tests.tiny_models import HEIGHT, WIDTH

from .strips import (
    BLOCK,
    BLOCK_BBOX,
    MEDIA,
    RAW,
    encode,
    plain_strip,
    post_strip,
    strip_with_block,
)


def _expected_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[BLOCK] = 1
    return mask


def _body(kind: str) -> tuple[bytes, str]:
    strip = strip_with_block()
    if kind == "raw":
        return strip.tobytes(), RAW
    if kind == "png-rgb":
        return encode(np.stack([strip] * 3, axis=-1), "PNG"), MEDIA["PNG"]
    if kind == "JPEG":
        return encode(strip, "JPEG", quality=100), MEDIA["JPEG"]
    return encode(strip, kind), MEDIA[kind]


@pytest.mark.parametrize("kind", ["PNG", "png-rgb", "JPEG", "BMP", "TIFF", "raw"])
def test_each_body_type_finds_the_block(client: TestClient, kind: str) -> None:
    body, content_type = _body(kind)
    response = post_strip(client, body, content_type)
    assert response.status_code == 200, response.text
    (defect,) = response.json()["defects"]
    assert (defect["class_id"], defect["class_name"]) == (1, "pits")
    assert defect["bbox"] == BLOCK_BBOX
    assert defect["area_px"] == 16 * 32
    assert defect["score"] > 0.99
    decoded = rle.decode(defect["encoded_pixels"], (HEIGHT, WIDTH))
    np.testing.assert_array_equal(decoded, _expected_mask())


def test_multipart_field_image(client: TestClient) -> None:
    png = encode(strip_with_block(), "PNG")
    response = client.post(
        "/v1/inspect",
        params={"camera_id": "cam-1"},
        files={"image": ("strip.png", png, "image/png"), "note": ("n.txt", b"x", "text/plain")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["defects"][0]["bbox"] == BLOCK_BBOX


def test_multipart_part_without_type_is_a_raw_buffer(client: TestClient) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"\r\n\r\n'.encode()
        + strip_with_block().tobytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = post_strip(client, body, f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 200, response.text
    assert response.json()["defects"][0]["bbox"] == BLOCK_BBOX


def test_multipart_part_without_file_name_keeps_every_byte(client: TestClient) -> None:
    """A plain form field comes back as text; the parse must not alter any byte value."""
    strip = np.resize(np.arange(256, dtype=np.uint8), (HEIGHT, WIDTH))
    strip[BLOCK] = 255
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"\r\n\r\n'.encode()
        + strip.tobytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = f"multipart/form-data; boundary={boundary}; charset=utf-8"
    as_form = post_strip(client, body, content_type).json()["defects"]
    as_raw = post_strip(client, strip.tobytes(), RAW).json()["defects"]
    assert as_form == as_raw and as_form


def test_response_carries_the_frame_model_and_timings(client: TestClient) -> None:
    frame_id = uuid.uuid4().hex
    response = post_strip(
        client,
        plain_strip().tobytes(),
        RAW,
        camera_id="cam-7",
        frame_id=frame_id,
        line_id="line-2",
        coil_id="coil-9",
        captured_at="2025-03-01T12:00:00+02:00",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    uuid.UUID(body["inspection_id"])
    assert (body["camera_id"], body["frame_id"], body["line_id"], body["coil_id"]) == (
        "cam-7",
        frame_id,
        "line-2",
        "coil-9",
    )
    assert datetime.fromisoformat(body["captured_at"]) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert datetime.fromisoformat(body["received_at"]).tzinfo is not None
    assert body["model"] == {"name": "probe", "version": 1}
    assert body["has_defect"] is False and body["defects"] == []
    timings = body["timings_ms"]
    assert set(timings) == {"decode", "queue", "inference", "postprocess", "total"}
    # The parts follow one another within the total (each is rounded to the microsecond).
    parts = timings["decode"] + timings["queue"] + timings["inference"] + timings["postprocess"]
    assert timings["total"] >= parts - 0.002
    assert "Idempotent-Replay" not in response.headers


def test_dark_and_bright_defects_are_separate_classes(client: TestClient) -> None:
    strip = strip_with_block()
    strip[200:210, 1500:1600] = 0
    response = post_strip(client, encode(strip, "PNG"), MEDIA["PNG"])
    defects = response.json()["defects"]
    assert [d["class_id"] for d in defects] == [1, 3]
    assert defects[1]["bbox"] == [1500, 200, 1599, 209]
    assert defects[1]["area_px"] == 1000


def test_below_the_minimum_area_is_not_a_defect(client: TestClient) -> None:
    strip = plain_strip()
    strip[5, 5:8] = 255  # 3 pixels, the probe's minimum area is 4
    response = post_strip(client, strip.tobytes(), RAW)
    assert response.json()["has_defect"] is False


def _count(client: TestClient, camera_id: str) -> int:
    sessions = client.app.state.services.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        query = select(func.count()).where(Inspection.camera_id == camera_id)
        return session.scalar(query.select_from(Inspection)) or 0


def test_same_frame_again_is_replayed_not_rerun(client: TestClient) -> None:
    camera, frame = f"cam-{uuid.uuid4().hex[:8]}", "frame-1"
    first = post_strip(
        client, encode(strip_with_block(), "PNG"), MEDIA["PNG"], camera_id=camera, frame_id=frame
    )
    again = post_strip(client, plain_strip().tobytes(), RAW, camera_id=camera, frame_id=frame)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replay"] == "true"
    assert again.json() == first.json()  # the stored result, not the new body's
    assert _count(client, camera) == 1


def test_a_stored_frame_is_replayed_even_if_its_body_no_longer_decodes(
    client: TestClient,
) -> None:
    camera, frame = f"cam-{uuid.uuid4().hex[:8]}", "frame-1"
    first = post_strip(client, plain_strip().tobytes(), RAW, camera_id=camera, frame_id=frame)
    again = post_strip(client, b"not a png", MEDIA["PNG"], camera_id=camera, frame_id=frame)
    assert again.status_code == 200 and again.headers["Idempotent-Replay"] == "true"
    assert again.json() == first.json()
    new = post_strip(client, b"not a png", MEDIA["PNG"], camera_id=camera, frame_id="frame-2")
    assert new.status_code == 400 and new.json()["error"]["code"] == "undecodable_image"


def _recorded_elsewhere(client: TestClient, camera_id: str, frame_id: str) -> str:
    """A result for the frame written straight into the database, as another API process (or
    this one before a restart) would have: unknown to this app's recorder."""
    services = client.app.state.services  # type: ignore[attr-defined]
    model = services.models.inspector
    row = new_inspection(
        camera_id=camera_id,
        frame_id=frame_id,
        line_id=None,
        coil_id=None,
        captured_at=None,
        received_at=datetime.now(UTC),
        model_name=model.name,
        model_version=model.version,
        image_height=HEIGHT,
        image_width=WIDTH,
        timings=dict.fromkeys(("decode", "queue", "inference", "postprocess", "total"), 1.0),
        defects=[],
    )
    with services.engine.connect() as connection:
        assert insert_inspection(connection, row)[1]
    return str(row.id)


@pytest.mark.parametrize("kind", ["raw", "PNG"])
def test_a_frame_recorded_by_another_process_is_replayed(client: TestClient, kind: str) -> None:
    camera, frame = f"cam-{uuid.uuid4().hex[:8]}", "frame-1"
    stored = _recorded_elsewhere(client, camera, frame)
    body, content_type = _body(kind)  # a block the stored result does not have
    again = post_strip(client, body, content_type, camera_id=camera, frame_id=frame)
    assert again.status_code == 200 and again.headers["Idempotent-Replay"] == "true"
    assert (again.json()["inspection_id"], again.json()["defects"]) == (stored, [])
    assert _count(client, camera) == 1


def test_a_frame_recorded_by_another_process_is_replayed_even_if_its_body_no_longer_decodes(
    client: TestClient,
) -> None:
    camera, frame = f"cam-{uuid.uuid4().hex[:8]}", "frame-1"
    stored = _recorded_elsewhere(client, camera, frame)
    for body, content_type in ((b"not a png", MEDIA["PNG"]), (b"short", RAW)):
        again = post_strip(client, body, content_type, camera_id=camera, frame_id=frame)
        assert again.status_code == 200 and again.headers["Idempotent-Replay"] == "true"
        assert again.json()["inspection_id"] == stored


def test_frame_ids_are_per_camera(client: TestClient) -> None:
    frame = uuid.uuid4().hex
    one = post_strip(client, plain_strip().tobytes(), RAW, camera_id="cam-a", frame_id=frame)
    two = post_strip(client, plain_strip().tobytes(), RAW, camera_id="cam-b", frame_id=frame)
    assert one.json()["inspection_id"] != two.json()["inspection_id"]
    assert "Idempotent-Replay" not in two.headers


def test_frames_without_id_are_all_recorded(client: TestClient) -> None:
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert post_strip(client, plain_strip().tobytes(), RAW, camera_id=camera).is_success
    assert _count(client, camera) == 2
