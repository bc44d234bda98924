"""GET /v1/inspections filters, keyset paging under concurrent inserts, and bad filter input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .history import SeedDefect, seed


@pytest.fixture()
def seeded(empty_db: TestClient) -> dict[str, str]:
    """Six inspections a minute apart, named by what tells them apart."""
    return {
        "plain": seed(empty_db, minutes=0),
        "pits_small": seed(empty_db, minutes=1, defects=(SeedDefect(1, 10),)),
        "crack_big": seed(empty_db, minutes=2, camera_id="C2", defects=(SeedDefect(2, 900),)),
        "both": seed(
            empty_db, minutes=3, coil_id="K7", defects=(SeedDefect(1, 50), SeedDefect(2, 5))
        ),
        "line2": seed(empty_db, minutes=4, line_id="L2", coil_id="K7"),
        "line2_scale": seed(empty_db, minutes=5, line_id="L2", defects=(SeedDefect(4, 300),)),
    }


def _ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get("/v1/inspections", params=params)
    assert response.status_code == 200, response.text
    return [item["inspection_id"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["line2_scale", "line2", "both", "crack_big", "pits_small", "plain"]),
        ({"line_id": "L2"}, ["line2_scale", "line2"]),
        ({"camera_id": "C2"}, ["crack_big"]),
        ({"coil_id": "K7"}, ["line2", "both"]),
        ({"class_id": 1}, ["both", "pits_small"]),
        ({"has_defect": "false"}, ["line2", "plain"]),
        ({"has_defect": "true", "line_id": "L1"}, ["both", "crack_big", "pits_small"]),
        ({"min_area": 100}, ["line2_scale", "crack_big"]),
        ({"class_id": 2, "min_area": 100}, ["crack_big"]),
        ({"class_id": 1, "min_area": 20}, ["both"]),
        ({"since": "2025-03-01T00:02:00Z", "until": "2025-03-01T00:04:00Z"}, ["both", "crack_big"]),
        ({"since": "2025-03-01T01:02:00+01:00"}, ["line2_scale", "line2", "both", "crack_big"]),
        ({"until": "2025-03-01T00:01:00"}, ["plain"]),
        ({"line_id": "nowhere"}, []),
    ],
)
def test_filters(
    empty_db: TestClient, seeded: dict[str, str], params: dict[str, Any], expected: list[str]
) -> None:
    assert _ids(empty_db, **params) == [seeded[name] for name in expected]


def test_filtered_pages_survive_concurrent_inserts(empty_db: TestClient) -> None:
    """Rows recorded while paging shift nothing: no row twice, none skipped."""
    before = [seed(empty_db, minutes=m // 2, line_id="L1") for m in range(12)]
    seed(empty_db, minutes=3, line_id="L9")
    seen, cursor = [], None
    while True:
        params = {"line_id": "L1", "limit": 5} | ({"cursor": cursor} if cursor else {})
        page = empty_db.get("/v1/inspections", params=params).json()
        seen += [item["inspection_id"] for item in page["items"]]
        seed(empty_db, minutes=100 + len(seen), line_id="L1")
        if (cursor := page["next_cursor"]) is None:
            break
    assert len(seen) == len(set(seen)) == len(before)
    assert set(seen) == set(before)


def test_a_page_of_a_thousand(empty_db: TestClient) -> None:
    assert empty_db.get("/v1/inspections", params={"limit": 1000}).status_code == 200


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"class_id": 9}, "unknown_class"),
        ({"class_id": 0}, "invalid_parameter"),
        ({"lineid": "L1"}, "unknown_parameter"),
        ({"has_defect": "maybe"}, "invalid_parameter"),
        ({"since": "yesterday"}, "invalid_parameter"),
        ({"min_area": -3}, "invalid_parameter"),
        ({"line_id": "L\x01"}, "invalid_parameter"),
        ({"since": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, "reversed_range"),
        ({"since": "2025-03-01T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, "reversed_range"),
        ({"cursor": "MjAyNS0wMS0wMXwxMjM", "line_id": "L1"}, "invalid_cursor"),
    ],
)
def test_bad_filters_are_422(client: TestClient, params: dict[str, Any], code: str) -> None:
    response = client.get("/v1/inspections", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
