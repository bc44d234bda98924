"""/v1/admin/jobs through the real app and an in-process worker: a job from queued to a
promoted version, cancel (queued and running), not-found, and every kind of bad request."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.jobs.worker import Worker
from service.store import ModelStore

from .conftest import AppFactory
from .job_runs import TINY_JOB, job_data_root, job_store, wait_for, worker
from .strips import RAW, plain_strip, post_strip

JOBS = "/v1/admin/jobs"


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
def store(folder: Path, source_store: ModelStore, model_store: ModelStore) -> ModelStore:
    """``tiny`` (with weights) and ``probe`` (ONNX only, cannot be pruned)."""
    store = job_store(folder / "store", source_store)
    shutil.copytree(model_store.root / "probe", store.root / "probe")
    return store


@pytest.fixture(scope="module")
def client(
    running_app: AppFactory, folder: Path, store: ModelStore, data_root: Path
) -> Iterator[TestClient]:
    """The app serving ``tiny`` production over SQLite (the embedded mode)."""
    with running_app(
        f"sqlite:///{folder / 'jobs.db'}",
        model_store=store.root,
        model_name="tiny",
        data_root=data_root,
        jobs_dir=folder / "jobs",
    ) as client:
        yield client


def _worker(client: TestClient) -> Worker:
    services = client.app.state.services  # type: ignore[attr-defined]
    settings = services.settings
    return worker(
        services.sessions, services.store, jobs_dir=settings.jobs_dir, data_root=settings.data_root
    )


def _post(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = client.post(JOBS, json={**TINY_JOB, **changes})
    assert response.status_code == 202, response.text
    return response.json()


def _get(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"{JOBS}/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _in_thread(target: Worker) -> threading.Thread:
    thread = threading.Thread(target=target.run, kwargs={"max_jobs": 1}, daemon=True)
    thread.start()
    return thread


def test_a_job_runs_from_queued_to_a_version_that_promotion_serves(
    client: TestClient, store: ModelStore
) -> None:
    posted = _post(client, finetune_epochs_per_step=1)
    job_id = posted["job_id"]
    assert posted["state"] == "queued" and posted["source_version"] == 1
    assert posted["request"]["target"] == {"flops_reduction": None, "pruning_ratio": 0.5}
    assert [event["kind"] for event in posted["events"]] == ["queued"]
    assert client.get(f"{JOBS}/{job_id}/report").json()["error"]["code"] == "report_not_ready"
    queued = client.get(JOBS, params={"state": "queued"}).json()["items"]
    assert [job["job_id"] for job in queued] == [job_id]

    thread = _in_thread(_worker(client))
    seen: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        seen.append(_get(client, job_id))
        return seen[-1] if seen[-1]["state"] not in ("queued", "running") else None

    done = wait_for(finished, timeout=300, what="the job to end")
    thread.join(timeout=30)
    assert done["state"] == "succeeded", done["error"]
    assert "running" in {job["state"] for job in seen}
    assert any(job["progress"] and job["progress"]["stage"] == "epoch" for job in seen[:-1])
    assert done["result"] == {"model": "tiny", "version": 2}
    assert (done["attempts"], done["worker"], done["error"]) == (1, None, None)
    progress = done["progress"]
    assert (progress["stage"], progress["step"], progress["steps"], progress["fraction"]) == (
        "published",
        2,
        2,
        1.0,
    )
    assert progress["macs"] < progress["source"]["macs"]
    assert progress["params"] < progress["source"]["params"]
    assert [event["kind"] for event in done["events"]] == [
        "queued", "claimed", "baseline",
        "pruned", "epoch", "step", "pruned", "epoch", "step",
        "published", "succeeded",
    ]  # fmt: skip
    steps = [event["data"] for event in done["events"] if event["kind"] == "step"]
    assert all({"loss", "val_dice", "macs", "params"} <= set(step) for step in steps)

    report = client.get(f"{JOBS}/{job_id}/report").json()
    assert (report["kept_step"], report["version"], report["job_id"]) == (2, 2, job_id)
    plot = client.get(f"{JOBS}/{job_id}/report.png")
    assert plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(b"\x89PNG")

    published = store.load("tiny", 2).manifest  # loads: every file verifies
    source = store.manifest("tiny", 1)
    assert published.metrics.macs < 0.8 * source.metrics.macs
    assert published.metrics.parity["mask_agreement"] > 0.999
    assert (published.lineage.parent_version, published.lineage.job_id) == (1, job_id)
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["tiny"]["aliases"] == {"candidate": 2, "production": 1}

    metrics = client.get("/metrics").text
    assert 'strip_inspection_jobs{state="succeeded"} 1.0' in metrics
    assert 'strip_inspection_job_duration_seconds_count{state="succeeded"} 1.0' in metrics

    promoted = client.post("/v1/admin/models/tiny/aliases/production", json={"version": 2})
    assert promoted.status_code == 200, promoted.text
    served = post_strip(client, plain_strip().tobytes(), RAW)
    assert served.status_code == 200, served.text
    assert served.json()["model"] == {"name": "tiny", "version": 2}


def test_a_job_with_the_step_schedule_and_final_fine_tune_runs_end_to_end(
    client: TestClient, store: ModelStore
) -> None:
    recipe = {
        "method": "scratch",
        "target": {"flops_reduction": 0.5},
        "steps": 2,
        "finetune_epochs_per_step": 0.25,
        "finetune_epochs": 1,
        "schedule": "agp",
        "lr_schedule": "onecycle",
        "allocation": "global",
        "max_layer_ratio": 0.75,
        "round_to": 8,
        "distill": True,
    }
    posted = _post(client, **recipe)
    thread = _in_thread(_worker(client))

    def ended() -> dict[str, Any] | None:
        job = _get(client, posted["job_id"])
        return job if job["state"] not in ("queued", "running") else None

    done = wait_for(ended, timeout=300, what="the job to end")
    thread.join(timeout=30)
    assert done["state"] == "succeeded", done["error"]
    kinds = [event["kind"] for event in done["events"]]
    assert kinds[2:-2] == [
        "baseline", "pruned", "epoch", "step", "pruned", "epoch", "step", "epoch", "step",
    ]  # fmt: skip
    progress = done["progress"]
    assert (progress["step"], progress["steps"], progress["fraction"]) == (3, 3, 1.0)
    manifest = store.manifest("tiny", done["result"]["version"])
    settings = manifest.lineage.settings
    assert manifest.lineage.method == "scratch"
    assert {key: settings[key] for key in recipe if key not in ("target", "method")} == {
        key: value for key, value in recipe.items() if key not in ("target", "method")
    }
    assert manifest.metrics.macs <= 0.5 * store.manifest("tiny", 1).metrics.macs
    report = client.get(f"{JOBS}/{posted['job_id']}/report").json()
    assert report["kept_step"] == 3


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
    assert not _worker(client).run_one()


def test_a_running_job_stops_at_its_next_batch_when_cancelled(client: TestClient) -> None:
    job_id = _post(client, steps=3)["job_id"]
    thread = _in_thread(_worker(client))
    wait_for(
        lambda: (_get(client, job_id)["progress"] or {}).get("stage"),
        timeout=120,
        what="the job's first progress",
    )
    response = client.post(f"{JOBS}/{job_id}/cancel")
    asked = time.monotonic()
    assert response.status_code == 202, response.text
    assert (response.json()["state"], response.json()["cancel_requested"]) == ("running", True)
    thread.join(timeout=120)
    assert not thread.is_alive()
    stopped_within = time.monotonic() - asked
    job = _get(client, job_id)
    assert (job["state"], job["error"], job["result"]) == ("cancelled", None, None)
    kinds = [event["kind"] for event in job["events"]]
    # At most the event of the batch under way when the flag was set, then the end.
    assert kinds[-1] == "cancelled" and len(kinds) - kinds.index("cancel_requested") <= 3, kinds
    assert stopped_within < 20, f"the worker went on for {stopped_within:.1f} s"
    assert client.get(f"{JOBS}/{job_id}/report").status_code == 404


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
        ({"source": {"model": "../tiny", "version": 1}}, "unknown_model", "invalid model name"),
        ({"source": {"model": "tiny", "version": 7}}, "unknown_version", "no version 7"),
        ({"source": {"model": "tiny", "alias": "gold"}}, "unknown_alias", "no alias 'gold'"),
        ({"source": {"model": "probe", "version": 1}}, "source_without_weights", "weights"),
        ({"source": {"model": "tiny"}}, "invalid_parameter", "version or alias"),
        ({"source": {"model": "tiny", "version": 1, "alias": "production"}}, "invalid_parameter",
         "version or alias"),
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
    response = client.post(JOBS, json={**TINY_JOB, **changes})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert len(client.get(JOBS, params={"limit": 500}).json()["items"]) == before


def test_a_request_without_a_dataset_is_422(client: TestClient) -> None:
    body = {key: value for key, value in TINY_JOB.items() if key != "dataset"}
    response = client.post(JOBS, json=body)
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "missing_parameter",
        "message": "body parameter 'dataset' is required",
    }
