"""GET /v1/inspections (newest first, keyset cursor) and GET /v1/inspections/{id}."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from .strips import RAW, encode, plain_strip, post_strip, strip_with_block


def _post_frames(client: TestClient, count: int) -> list[str]:
    ids = []
    for index in range(count):
        body = encode(strip_with_block(), "PNG") if index % 2 else plain_strip().tobytes()
        kind = "image/png" if index % 2 else RAW
        response = post_strip(client, body, kind, camera_id="cam-list", frame_id=f"f{index}")
        ids.append(response.json()["inspection_id"])
    return ids


def test_pages_newest_first_until_the_cursor_runs_out(empty_db: TestClient) -> None:
    posted = _post_frames(empty_db, 5)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = empty_db.get("/v1/inspections", params=params).json()
        seen += [item["inspection_id"] for item in page["items"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if cursor is None:
            break
    assert seen == posted[::-1]
    assert pages == 3


def test_items_carry_the_frame_model_and_defects(empty_db: TestClient) -> None:
    _post_frames(empty_db, 2)
    newest, oldest = empty_db.get("/v1/inspections").json()["items"]
    assert newest["frame_id"] == "f1" and newest["has_defect"] is True
    assert newest["defects"][0]["class_name"] == "pits"
    assert oldest["frame_id"] == "f0" and oldest["defects"] == []
    assert newest["model"] == {"name": "probe", "version": 1}
    assert newest["received_at"] >= oldest["received_at"]
    assert "timings_ms" not in newest


def test_empty_history(empty_db: TestClient) -> None:
    assert empty_db.get("/v1/inspections").json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"cursor": "bm90fGh4"}, "invalid_cursor"),
        ({"limit": 0}, "invalid_parameter"),
        ({"limit": 1001}, "invalid_parameter"),
        ({"limit": "many"}, "invalid_parameter"),
    ],
)
def test_bad_listing_parameters(client: TestClient, params: dict[str, object], code: str) -> None:
    response = client.get("/v1/inspections", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


def test_one_inspection_by_id(client: TestClient) -> None:
    posted = post_strip(client, plain_strip().tobytes(), RAW).json()
    response = client.get(f"/v1/inspections/{posted['inspection_id']}")
    assert response.status_code == 200
    assert response.json()["inspection_id"] == posted["inspection_id"]


def test_unknown_inspection_is_404(client: TestClient) -> None:
    response = client.get(f"/v1/inspections/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "inspection_not_found"
    assert client.get("/v1/inspections/not-a-uuid").status_code == 422
