"""POST /v1/inspect/batch: several strips in one multipart request, one result each, in order."""

from __future__ import annotations

import uuid

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import rle
from tests.tiny_models import HEIGHT, WIDTH

from .strips import BLOCK, BLOCK_BBOX, MEDIA, encode, plain_strip, strip_with_block

BATCH = "/v1/inspect/batch"


def _files(*images: tuple[bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"strip-{i}", data, kind)) for i, (data, kind) in enumerate(images)]


def _png(pixels: np.ndarray) -> tuple[bytes, str]:
    return encode(pixels, "PNG"), MEDIA["PNG"]


def _post(client: TestClient, files: list, **params: object) -> httpx.Response:  # type: ignore[type-arg]
    params.setdefault("camera_id", "cam-batch")
    return client.post(BATCH, params=params, files=files)


def test_one_result_per_image_in_order(client: TestClient) -> None:
    dark = plain_strip()
    dark[200:210, 1500:1600] = 0
    frames = [uuid.uuid4().hex for _ in range(3)]
    response = _post(
        client,
        _files(_png(strip_with_block()), _png(plain_strip()), _png(dark)),
        frame_id=frames,
        line_id="line-3",
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["index"] for item in items] == [0, 1, 2]
    assert all(item["status"] == 200 and item["error"] is None for item in items)
    results = [item["result"] for item in items]
    assert [r["frame_id"] for r in results] == frames
    assert {r["line_id"] for r in results} == {"line-3"}
    assert [[d["class_id"] for d in r["defects"]] for r in results] == [[1], [], [3]]
    assert results[0]["defects"][0]["bbox"] == BLOCK_BBOX
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[BLOCK] = 1
    np.testing.assert_array_equal(rle.decode(results[0]["defects"][0]["encoded_pixels"]), expected)
    assert set(results[0]["timings_ms"]) == {"decode", "queue", "inference", "postprocess", "total"}
    assert len({r["inspection_id"] for r in results}) == 3
    kept = [client.get(f"/v1/inspections/{r['inspection_id']}/overlay.png") for r in results]
    assert {o.headers["X-Strip-Image"] for o in kept} == {"kept"}  # every new strip was kept


def test_a_bad_image_fails_alone(client: TestClient) -> None:
    response = _post(
        client,
        _files(
            _png(strip_with_block()),
            (b"garbage", MEDIA["PNG"]),
            (encode(np.zeros((256, 800), np.uint8), "PNG"), MEDIA["PNG"]),
            (b"hello", "text/plain"),
            _png(plain_strip()),
        ),
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(item["status"], (item["error"] or {}).get("code")) for item in items] == [
        (200, None),
        (400, "undecodable_image"),
        (422, "wrong_dimensions"),
        (415, "unsupported_media_type"),
        (200, None),
    ]
    assert items[1]["result"] is None and "PNG" in items[1]["error"]["message"]
    assert items[0]["result"]["defects"][0]["bbox"] == BLOCK_BBOX


def test_frames_seen_before_are_replayed(client: TestClient) -> None:
    seen, new = uuid.uuid4().hex, uuid.uuid4().hex
    first = _post(client, _files(_png(strip_with_block())), frame_id=[seen]).json()["items"][0]
    again = _post(
        client, _files(_png(plain_strip()), _png(plain_strip())), frame_id=[seen, new]
    ).json()["items"]
    assert again[0]["replay"] is True and again[0]["result"] == first["result"]
    assert again[1]["replay"] is False and again[1]["result"]["frame_id"] == new


def test_the_same_frame_twice_in_one_batch_is_recorded_once(client: TestClient) -> None:
    frame = uuid.uuid4().hex
    items = _post(
        client, _files(_png(strip_with_block()), _png(plain_strip())), frame_id=[frame, frame]
    ).json()["items"]
    assert items[0]["result"]["inspection_id"] == items[1]["result"]["inspection_id"]
    assert sorted(item["replay"] for item in items) == [False, True]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"frame_id": ["a"]}, 422, "frame_ids_mismatch"),
        ({"files": [("other", ("x", b"1", "text/plain"))]}, 422, "missing_field"),
        (
            {"files": [("image", (f"s{i}", b"x", "image/png")) for i in range(33)]},
            422,
            "too_many_images",
        ),
        (
            {
                "content": plain_strip().tobytes(),
                "headers": {"content-type": "application/octet-stream"},
            },
            415,
            "unsupported_media_type",
        ),
        ({"camera_id": None}, 422, "missing_parameter"),
        ({"frame_id": ["ok", "bad\x00"]}, 422, "invalid_parameter"),
    ],
)
def test_bad_requests(
    client: TestClient, request_kwargs: dict[str, object], status: int, code: str
) -> None:
    params: dict[str, object] = {"camera_id": "cam-batch"}
    kwargs = dict(request_kwargs)
    for name in ("frame_id", "camera_id"):
        if name in kwargs:
            params[name] = kwargs.pop(name)
    params = {k: v for k, v in params.items() if v is not None}
    if "content" not in kwargs:
        kwargs.setdefault("files", _files(_png(plain_strip()), _png(plain_strip())))
    response = client.post(BATCH, params=params, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_openapi_documents_the_batch_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()["paths"][BATCH]["post"]
    assert "multipart/form-data" in spec["requestBody"]["content"]
    assert any(p["name"] == "frame_id" for p in spec["parameters"])
