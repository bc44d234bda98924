"""A compression job through the real app and an in-process worker: from queued to a version
that promotion serves, the step schedule with a final fine-tune, and a cancel while it runs.

The worker runs in the test's own thread; what a test looks at while a job runs, it looks at
from the worker's progress events (``_on_progress``), so nothing waits on a clock. The requests
themselves (validation, listing, cancel while queued): test_jobs.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("torch")  # the worker prunes and fine-tunes with torch

from service.jobs import queue
from service.store import ModelStore

from .conftest import AppFactory
from .job_runs import JOBS, TINY_JOB, app_worker, get_job, job_app, job_store, post_job
from .strips import RAW, plain_strip, post_strip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("job_lifecycle")


@pytest.fixture(scope="module")
def client(
    running_app: AppFactory, folder: Path, source_store: ModelStore, synthetic_root: Path
) -> Iterator[TestClient]:
    """The app serving ``tiny`` production over SQLite (the embedded mode)."""
    with job_app(
        running_app, folder, job_store(folder / "store", source_store), synthetic_root
    ) as client:
        yield client


@pytest.fixture(scope="module")
def store(client: TestClient) -> ModelStore:
    return client.app.state.services.store  # type: ignore[attr-defined]


def _post(client: TestClient, **changes: Any) -> dict[str, Any]:
    return post_job(client, {**TINY_JOB, **changes})


def _on_progress(monkeypatch: pytest.MonkeyPatch, look: Callable[[str], None]) -> None:
    """Call ``look(kind)`` in the worker's thread as soon as it has recorded each progress
    event, before the job goes on."""
    record = queue.record_progress

    def recorded(session: Any, **event: Any) -> None:
        record(session, **event)
        look(event["kind"])

    monkeypatch.setattr(queue, "record_progress", recorded)


def test_a_job_runs_from_queued_to_a_version_that_promotion_serves(
    client: TestClient, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _post(client, finetune_epochs_per_step=1)["job_id"]
    seen: list[dict[str, Any]] = []
    _on_progress(monkeypatch, lambda kind: seen.append(get_job(client, job_id)))
    assert app_worker(client).run(max_jobs=1) == 1
    done = get_job(client, job_id)
    assert done["state"] == "succeeded", done["error"]
    # Every progress event shows in the API while the job runs, as soon as it is recorded.
    assert {job["state"] for job in seen} == {"running"}
    stages = [job["progress"]["stage"] for job in seen]
    assert stages == [event["kind"] for event in done["events"]][2:-1]
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
        "publishing", "published", "succeeded",
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
        "round_to": 4,  # the tiny net's 8-wide layers can halve
        "distill": True,
    }
    posted = _post(client, **recipe)
    assert app_worker(client).run(max_jobs=1) == 1
    done = get_job(client, posted["job_id"])
    assert done["state"] == "succeeded", done["error"]
    kinds = [event["kind"] for event in done["events"]]
    assert kinds[2:-2] == [
        "baseline", "pruned", "epoch", "step", "pruned", "epoch", "step", "epoch", "step",
        "publishing",
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


def test_a_running_job_stops_at_its_next_batch_when_cancelled(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _post(client, steps=3)["job_id"]
    cancels = []

    def cancel_once_running(kind: str) -> None:
        if not cancels:  # at the job's first progress (its baseline)
            cancels.append(client.post(f"{JOBS}/{job_id}/cancel"))

    _on_progress(monkeypatch, cancel_once_running)
    assert app_worker(client).run(max_jobs=1) == 1
    (response,) = cancels
    assert response.status_code == 202, response.text
    assert (response.json()["state"], response.json()["cancel_requested"]) == ("running", True)
    job = get_job(client, job_id)
    assert (job["state"], job["error"], job["result"]) == ("cancelled", None, None)
    kinds = [event["kind"] for event in job["events"]]
    # At most the event of the batch under way when the flag was set, then the end.
    assert kinds[-1] == "cancelled" and len(kinds) - kinds.index("cancel_requested") <= 3, kinds
    assert client.get(f"{JOBS}/{job_id}/report").status_code == 404


def test_a_target_beyond_the_caps_fails_before_any_training_saying_what_is_reachable(
    client: TestClient, store: ModelStore
) -> None:
    versions = store.versions("tiny")
    job_id = _post(
        client, target={"flops_reduction": 0.9}, max_layer_ratio=0.5, finetune_epochs_per_step=1
    )["job_id"]
    assert app_worker(client).run(max_jobs=1) == 1
    done = get_job(client, job_id)
    assert done["state"] == "failed"
    assert "target_unreachable" in done["error"] and "at most 0.7" in done["error"]
    assert [event["kind"] for event in done["events"]][-2:] == ["baseline", "failed"]
    assert store.versions("tiny") == versions
