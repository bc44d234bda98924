"""GET /v1/inspections/export.csv (Severstal submission format) and export.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.data.severstal import read_train_csv
from service.db import InspectionFilter, make_session_factory
from service.db import export as export_module

from .history import SeedDefect, engine_of, seed


@pytest.fixture()
def seeded(empty_db: TestClient) -> list[str]:
    return [
        seed(empty_db, minutes=0),
        seed(empty_db, minutes=1, defects=(SeedDefect(1, 4, "1 4"), SeedDefect(3, 2, "9 2"))),
        seed(empty_db, minutes=2, line_id="L2", defects=(SeedDefect(2, 4),)),
    ]


def test_csv_has_one_row_per_image_and_class(
    seeded: list[str], empty_db: TestClient, tmp_path: Path
) -> None:
    response = empty_db.get("/v1/inspections/export.csv", params={"line_id": "L1"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    newest, oldest = seeded[1], seeded[0]
    assert lines == [
        "ImageId,ClassId,EncodedPixels",
        f"{newest}.png,1,1 4",
        f"{newest}.png,2,",
        f"{newest}.png,3,9 2",
        f"{newest}.png,4,",
        *(f"{oldest}.png,{k}," for k in range(1, 5)),
    ]
    (tmp_path / "train.csv").write_text(response.text)
    assert read_train_csv(tmp_path / "train.csv") == {
        f"{newest}.png": {1: "1 4", 3: "9 2"},
        f"{oldest}.png": {},
    }


def test_jsonl_matches_the_listing(seeded: list[str], empty_db: TestClient) -> None:
    response = empty_db.get("/v1/inspections/export.jsonl", params={"has_defect": "true"})
    assert response.status_code == 200
    items = [json.loads(line) for line in response.text.splitlines()]
    listed = empty_db.get("/v1/inspections", params={"has_defect": "true"}).json()["items"]
    assert items == listed
    assert [item["inspection_id"] for item in items] == [seeded[2], seeded[1]]


def test_regrouping_across_fetch_batches(
    empty_db: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defects of one inspection split over two fetched batches still come out together."""
    monkeypatch.setattr(export_module, "BATCH", 3)
    expected = {
        seed(empty_db, minutes=m, defects=tuple(SeedDefect(k, k) for k in range(1, 1 + m % 4)))
        for m in range(9)
    }
    with make_session_factory(engine_of(empty_db))() as session:
        records = list(export_module.stream_inspections(session, where=InspectionFilter()))
    assert {str(r.id) for r in records} == expected and len(records) == 9
    assert [[d.class_id for d in r.defects] for r in records][:4] == [[], [1, 2, 3], [1, 2], [1]]


def test_bad_export_filters_are_422(client: TestClient) -> None:
    for path in ("/v1/inspections/export.csv", "/v1/inspections/export.jsonl"):
        response = client.get(path, params={"until": "2020-01-01", "since": "2021-01-01"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "reversed_range"
