"""GET /v1/defects/summary: the same seeded rows give the same answer on SQLite and Postgres."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .history import SeedDefect, seed

RANGE = {"since": "2025-03-01T00:00:00Z", "until": "2025-03-03T00:00:00Z"}


@pytest.fixture()
def seeded(empty_db: TestClient) -> TestClient:
    seed(empty_db, minutes=5, defects=(SeedDefect(1, 10), SeedDefect(2, 7)))
    seed(empty_db, minutes=59.99, line_id="L2", defects=(SeedDefect(1, 30),))
    seed(empty_db, minutes=60, camera_id="C2")
    seed(empty_db, minutes=61, camera_id="C2", defects=(SeedDefect(1, 5),))
    seed(empty_db, minutes=24 * 60 + 1, line_id="L2", defects=(SeedDefect(4, 100),))
    seed(empty_db, minutes=3 * 24 * 60, defects=(SeedDefect(3, 1),))  # after the range
    return empty_db


def _summary(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/defects/summary", params=RANGE | params)
    assert response.status_code == 200, response.text
    return response.json()


def _classes(body: dict[str, Any]) -> list[tuple[str, str | None, int, int, int]]:
    return [
        (b["start"][:16], b["group"], b["class_id"], b["defects"], b["area_px"])
        for b in body["classes"]
    ]


def test_hourly_per_class(seeded: TestClient) -> None:
    body = _summary(seeded)
    assert body["bucket"] == "hour" and body["group_by"] is None
    assert _classes(body) == [
        ("2025-03-01T00:00", None, 1, 2, 40),
        ("2025-03-01T00:00", None, 2, 1, 7),
        ("2025-03-01T01:00", None, 1, 1, 5),
        ("2025-03-02T00:00", None, 4, 1, 100),
    ]
    assert body["classes"][0]["class_name"] == "pits"
    assert body["classes"][0]["start"] in ("2025-03-01T00:00:00Z", "2025-03-01T00:00:00+00:00")
    made = [(b["start"][:13], b["inspections"], b["with_defect"]) for b in body["inspections"]]
    assert made == [("2025-03-01T00", 2, 2), ("2025-03-01T01", 2, 1), ("2025-03-02T00", 1, 1)]


def test_daily_by_line(seeded: TestClient) -> None:
    assert _classes(_summary(seeded, bucket="day", group_by="line")) == [
        ("2025-03-01T00:00", "L1", 1, 2, 15),
        ("2025-03-01T00:00", "L1", 2, 1, 7),
        ("2025-03-01T00:00", "L2", 1, 1, 30),
        ("2025-03-02T00:00", "L2", 4, 1, 100),
    ]


def test_by_camera_filtered_to_a_line(seeded: TestClient) -> None:
    body = _summary(seeded, bucket="day", group_by="camera", line_id="L1")
    assert _classes(body) == [
        ("2025-03-01T00:00", "C1", 1, 1, 10),
        ("2025-03-01T00:00", "C1", 2, 1, 7),
        ("2025-03-01T00:00", "C2", 1, 1, 5),
    ]
    assert [(b["group"], b["inspections"]) for b in body["inspections"]] == [("C1", 1), ("C2", 2)]


def test_hour_then_day_of_the_same_shape(seeded: TestClient) -> None:
    """The bucket unit is part of the compiled statement's cache key."""
    hourly, daily = (_summary(seeded, bucket=bucket) for bucket in ("hour", "day"))
    assert len(hourly["inspections"]) == 3
    made = [(b["start"][:10], b["inspections"]) for b in daily["inspections"]]
    assert made == [("2025-03-01", 4), ("2025-03-02", 1)]


def test_default_range_is_the_last_day(seeded: TestClient) -> None:
    response = seeded.get("/v1/defects/summary")
    assert response.status_code == 200
    assert response.json()["classes"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"bucket": "week"}, "invalid_parameter"),
        ({"group_by": "coil"}, "invalid_parameter"),
        ({"since": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, "reversed_range"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "range_too_long"),
        ({"class": "1"}, "unknown_parameter"),
    ],
)
def test_bad_summary_queries(client: TestClient, params: dict[str, str], code: str) -> None:
    response = client.get("/v1/defects/summary", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
