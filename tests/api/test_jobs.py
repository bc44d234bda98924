"""/v1/admin/jobs, the requests: a job queued, cancelled while queued, listed, not found, and
every kind of bad request refused with what is wrong. No job runs here (no torch needed): the
source is the committed ``unet-tiny``, published with its weights. Jobs that run:
test_job_lifecycle.py.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.jobs import queue
from service.store import ModelStore

from .conftest import AppFactory
from .job_runs import JOBS, TINY_JOB, get_job, job_data_root, post_job

REQUEST = {**TINY_JOB, "source": {"model": "unet-tiny", "version": 1}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs_api")


@pytest.fixture(scope="module")
def data_root(folder: Path, synthetic_root: Path) -> Path:
    """The synthetic strips as ``synthetic``, plus things that are not datasets."""
    root = job_data_root(folder / "data", synthetic_root)
    (root / "notes").mkdir()
    (root / "escape").symlink_to(synthetic_root, target_is_directory=True)  # leads outside
    neu_like = root / "three-classes"  # NEU-Seg's layout: 3 classes, the source has 4
    neu_like.mkdir()
    (neu_like / "manifest.csv").write_text("stem,split\na,train\nb,val\n")
    return root


@pytest.fixture(scope="module")
def client(
    running_app: AppFactory, folder: Path, model_store: ModelStore, data_root: Path
) -> Iterator[TestClient]:
    """The app over SQLite, its store holding ``unet-tiny`` (with weights) and ``probe`` (ONNX
    only, cannot be pruned)."""
    with running_app(
        f"sqlite:///{folder / 'jobs.db'}",
        model_store=shutil.copytree(model_store.root, folder / "store"),
        data_root=data_root,
        jobs_dir=folder / "jobs",
    ) as client:
        yield client


def _post(client: TestClient, **changes: Any) -> dict[str, Any]:
    return post_job(client, {**REQUEST, **changes})


def test_a_posted_job_is_queued_with_its_source_version_and_request(client: TestClient) -> None:
    posted = _post(client)
    job_id = posted["job_id"]
    assert posted["state"] == "queued" and posted["source_version"] == 1
    assert posted["request"]["target"] == {"flops_reduction": None, "pruning_ratio": 0.5}
    assert [event["kind"] for event in posted["events"]] == ["queued"]
    assert get_job(client, job_id) == posted
    assert client.get(f"{JOBS}/{job_id}/report").json()["error"]["code"] == "report_not_ready"
    queued = client.get(JOBS, params={"state": "queued"}).json()["items"]
    assert [job["job_id"] for job in queued] == [job_id]
    assert client.post(f"{JOBS}/{job_id}/cancel").status_code == 200  # the queue empty again


def test_a_queued_job_is_cancelled_at_once_and_never_runs(client: TestClient) -> None:
    job_id = _post(client)["job_id"]
    response = client.post(f"{JOBS}/{job_id}/cancel")
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["state"], job["cancel_requested"], job["attempts"]) == ("cancelled", True, 0)
    assert job["finished_at"] is not None
    assert [event["kind"] for event in job["events"]] == ["queued", "cancelled"]
    again = client.post(f"{JOBS}/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_finished"
    with client.app.state.services.sessions() as session:  # type: ignore[attr-defined]
        assert queue.claim(session, worker_id="w", lease_s=60.0, now=datetime.now(UTC)) is None


def test_unknown_jobs_are_404(client: TestClient) -> None:
    nobody = uuid.uuid4()
    for method, path in [
        ("GET", f"{JOBS}/{nobody}"),
        ("POST", f"{JOBS}/{nobody}/cancel"),
        ("GET", f"{JOBS}/{nobody}/report"),
        ("GET", f"{JOBS}/{nobody}/report.png"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "job_not_found"
    assert client.get(f"{JOBS}/not-a-job").status_code == 422
    assert client.get(JOBS, params={"state": "paused"}).status_code == 422


def test_the_listing_is_newest_first(client: TestClient) -> None:
    posted = [_post(client)["job_id"] for _ in range(2)]
    for job_id in posted:
        client.post(f"{JOBS}/{job_id}/cancel")
    listed = [job["job_id"] for job in client.get(JOBS, params={"limit": 2}).json()["items"]]
    assert listed == posted[::-1]
    cancelled = client.get(JOBS, params={"state": "cancelled"}).json()["items"]
    assert {job["state"] for job in cancelled} == {"cancelled"}


@pytest.mark.parametrize(
    ("changes", "code", "says"),
    [
        ({"source": {"model": "rust", "alias": "production"}}, "unknown_model", "no model"),
        ({"source": {"model": "../unet-tiny", "version": 1}}, "invalid_model_name",
         "invalid model name"),
        ({"source": {"model": "unet-tiny", "alias": "a..b"}}, "invalid_alias_name",
         "invalid alias name"),
        ({"source": {"model": "unet-tiny", "version": 7}}, "unknown_version", "no version 7"),
        ({"source": {"model": "unet-tiny", "alias": "gold"}}, "unknown_alias", "no alias 'gold'"),
        ({"source": {"model": "probe", "version": 1}}, "source_without_weights", "weights"),
        ({"source": {"model": "unet-tiny"}}, "invalid_parameter", "version or alias"),
        ({"source": {"model": "unet-tiny", "version": 1, "alias": "production"}},
         "invalid_parameter", "version or alias"),
        ({"target": {"flops_reduction": 0.96}}, "invalid_parameter", "target.flops_reduction"),
        ({"target": {"flops_reduction": 0}}, "invalid_parameter", "target.flops_reduction"),
        ({"target": {"pruning_ratio": 0.95}}, "invalid_parameter", "target.pruning_ratio"),
        ({"target": {"flops_reduction": 0.5, "pruning_ratio": 0.5}}, "invalid_parameter",
         "exactly one target"),
        ({"target": {}}, "invalid_parameter", "exactly one target"),
        ({"target": {"ratio": 0.5}}, "unknown_parameter", "target.ratio"),
        ({"method": "taylor"}, "invalid_parameter", "unknown method"),
        ({"device": "tpu"}, "invalid_parameter", "device"),
        ({"steps": 0}, "invalid_parameter", "steps"),
        ({"finetune_epochs_per_step": -1}, "invalid_parameter", "finetune_epochs_per_step"),
        ({"finetune_epochs": -1}, "invalid_parameter", "finetune_epochs"),
        ({"finetune_epochs": 0.5}, "invalid_parameter", "finetune_epochs"),
        ({"schedule": "exponential"}, "invalid_parameter", "unknown schedule"),
        ({"lr_schedule": "step"}, "invalid_parameter", "unknown lr_schedule"),
        ({"allocation": "random"}, "invalid_parameter", "unknown allocation"),
        ({"max_layer_ratio": 1.0}, "invalid_parameter", "max_layer_ratio"),
        ({"max_layer_ratio": 0}, "invalid_parameter", "max_layer_ratio"),
        ({"round_to": 0}, "invalid_parameter", "round_to"),
        ({"round_to": 65}, "invalid_parameter", "round_to"),
        ({"max_dice_drop": -0.5}, "invalid_parameter", "max_dice_drop"),
        ({"priority": 1}, "unknown_parameter", "priority"),
        ({"quantize": {"method": "histogram"}}, "invalid_parameter", "quantize.method"),
        ({"quantize": {"calibration_images": 0}}, "invalid_parameter", "calibration_images"),
        ({"quantize": {"keep_float": ["decoder"]}}, "invalid_parameter", "keep_float"),
        ({"quantize": {"min_mask_dice": 1.5}}, "invalid_parameter", "min_mask_dice"),
        ({"quantize": {"bits": 4}}, "unknown_parameter", "bits"),
        ({"dataset": "/etc"}, "invalid_dataset", "not a path"),
        ({"dataset": "../synthetic"}, "invalid_dataset", "not a path"),
        ({"dataset": "synthetic/../../x"}, "invalid_dataset", "not a path"),
        ({"dataset": "severstal:/tmp"}, "invalid_dataset", "not a path"),
        ({"dataset": "escape"}, "invalid_dataset", "outside DATA_ROOT"),
        ({"dataset": "nowhere"}, "unknown_dataset", "no dataset 'nowhere'"),
        ({"dataset": "notes"}, "unknown_dataset", "neither NEU-Seg"),
        ({"dataset": "three-classes"}, "dataset_mismatch", "3 classes"),
    ],
)  # fmt: skip
def test_bad_requests_are_422_saying_what_is_wrong(
    client: TestClient, changes: dict[str, Any], code: str, says: str
) -> None:
    before = len(client.get(JOBS, params={"limit": 500}).json()["items"])
    response = client.post(JOBS, json={**REQUEST, **changes})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert len(client.get(JOBS, params={"limit": 500}).json()["items"]) == before


def test_a_request_without_a_dataset_is_422(client: TestClient) -> None:
    body = {key: value for key, value in REQUEST.items() if key != "dataset"}
    response = client.post(JOBS, json=body)
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "missing_parameter",
        "message": "body parameter 'dataset' is required",
    }
