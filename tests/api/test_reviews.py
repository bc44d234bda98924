"""Reviews: POST/GET /v1/inspections/{id}/review and the reviewed set as a training dataset."""

from __future__ import annotations

import io
import tarfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import rle
from service.data.severstal import SeverstalDataset

from .history import SeedDefect, seed
from .strips import BLOCK, RAW, post_strip, strip_with_block

MISSED = rle.encode(np.pad(np.ones((4, 4), np.uint8), ((100, 152), (200, 1396))))


def _post_block(client: TestClient) -> dict[str, Any]:
    body = strip_with_block().tobytes()
    return post_strip(client, body, RAW, camera_id="cam-review", frame_id=uuid.uuid4().hex).json()


def test_review_is_stored_with_reviewer_and_time(client: TestClient) -> None:
    inspection = _post_block(client)
    body = {
        "defects": [{"class_id": 1, "verdict": "false_positive"}],
        "missed": [
            {"class_id": 1, "encoded_pixels": MISSED},
            {"class_id": 3, "encoded_pixels": "5 2"},
        ],
    }
    url = f"/v1/inspections/{inspection['inspection_id']}/review"
    response = client.post(url, json=body)
    assert response.status_code == 201, response.text
    stored = client.get(url).json()
    assert stored == response.json()
    assert stored["reviewer"] == "anonymous" and stored["reviewed_at"]
    assert stored["defects"] == body["defects"] and stored["missed"] == body["missed"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"defects": [{"class_id": 2, "verdict": "confirmed"}]}, "defect_not_found"),
        ({"defects": []}, "verdict_missing"),
        ({"defects": [{"class_id": 1, "verdict": "maybe"}]}, "invalid_parameter"),
        (
            {
                "defects": [{"class_id": 1, "verdict": "confirmed"}],
                "missed": [{"class_id": 2, "encoded_pixels": "5 x"}],
            },
            "invalid_rle",
        ),
        (
            {
                "defects": [{"class_id": 1, "verdict": "confirmed"}],
                "missed": [{"class_id": 2, "encoded_pixels": "409600 2"}],
            },
            "invalid_rle",
        ),
        (
            {
                "defects": [{"class_id": 1, "verdict": "confirmed"}],
                "missed": [{"class_id": 1, "encoded_pixels": "5 2"}],
            },
            "defect_already_found",
        ),
        (
            {
                "defects": [{"class_id": 1, "verdict": "confirmed"}],
                "missed": [{"class_id": 9, "encoded_pixels": "5 2"}],
            },
            "unknown_class",
        ),
    ],
)
def test_bad_reviews_are_422(client: TestClient, body: dict[str, Any], code: str) -> None:
    inspection = _post_block(client)
    response = client.post(f"/v1/inspections/{inspection['inspection_id']}/review", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_unknown_inspection_or_review_is_404(client: TestClient) -> None:
    url = f"/v1/inspections/{uuid.uuid4()}/review"
    assert client.post(url, json={}).json()["error"]["code"] == "inspection_not_found"
    assert client.get(url).status_code == 404
    unreviewed = _post_block(client)["inspection_id"]
    response = client.get(f"/v1/inspections/{unreviewed}/review")
    assert response.status_code == 404 and response.json()["error"]["code"] == "review_not_found"


def test_reviewed_set_is_a_severstal_dataset(empty_db: TestClient, tmp_path: Path) -> None:
    confirmed, corrected = _post_block(empty_db), _post_block(empty_db)
    _post_block(empty_db)  # not reviewed: not in the set
    no_image = seed(empty_db, minutes=0, camera_id="cam-review", defects=(SeedDefect(2, 4),))
    verdicts = {"defects": [{"class_id": 1, "verdict": "confirmed"}]}
    replaced = {
        "defects": [{"class_id": 1, "verdict": "false_positive"}],
        "missed": [{"class_id": 4, "encoded_pixels": MISSED}],
    }
    for inspection_id, body in (
        (confirmed["inspection_id"], verdicts),
        (no_image, {"defects": [{"class_id": 2, "verdict": "confirmed"}]}),
        (corrected["inspection_id"], verdicts),
        (corrected["inspection_id"], replaced),
    ):
        assert (
            empty_db.post(f"/v1/inspections/{inspection_id}/review", json=body).status_code == 201
        )
    response = empty_db.get("/v1/reviews/dataset.tar", params={"camera_id": "cam-review"})
    assert response.status_code == 200, response.text
    assert response.headers["X-Skipped-Without-Image"] == "1"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        tar.extractall(tmp_path, filter="data")
    dataset = SeverstalDataset(tmp_path)
    samples = {
        Path(sample.image_id).stem: sample
        for sample in map(dataset.__getitem__, range(len(dataset)))
    }
    assert set(samples) == {confirmed["inspection_id"], corrected["inspection_id"]}
    kept = samples[confirmed["inspection_id"]]
    assert np.array_equal(kept.image, strip_with_block())
    assert kept.masks[0][BLOCK].all() and kept.masks[0].sum() == kept.masks[0][BLOCK].size
    fixed = samples[corrected["inspection_id"]].masks
    assert fixed[0].sum() == 0 and fixed[3].sum() == 16 and fixed[3][100:104, 200:204].all()
    assert [c.name for c in dataset.classes] == ["pits", "crack", "scratch", "scale"]
