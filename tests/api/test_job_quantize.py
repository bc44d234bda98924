"""A compression job with the int8 stage, over HTTP: the pruned float version, then its int8
child, which takes the alias candidate; lineage leads from it through the float version to the
source. Bad quantize fields: test_jobs.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")

from service.store import ModelStore

from .conftest import AppFactory
from .job_runs import TINY_JOB, get_job, job_data_root, job_store, post_job, worker

QUANTIZE = {"calibration_images": 3, "keep_float": ["stem"], "min_mask_dice": 0.5}


@pytest.fixture(scope="module")
def client(
    running_app: AppFactory,
    tmp_path_factory: pytest.TempPathFactory,
    source_store: ModelStore,
    synthetic_root: Path,
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("job_quantize")
    with running_app(
        f"sqlite:///{folder / 'jobs.db'}",
        model_store=job_store(folder / "store", source_store).root,
        model_name="tiny",
        data_root=job_data_root(folder / "data", synthetic_root),
        jobs_dir=folder / "jobs",
    ) as client:
        yield client


def test_a_job_with_the_quantize_stage_publishes_an_int8_child_of_its_float_result(
    client: TestClient,
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    store: ModelStore = services.store
    job_id = post_job(client, {**TINY_JOB, "quantize": QUANTIZE})["job_id"]
    runner = worker(
        services.sessions,
        store,
        jobs_dir=services.settings.jobs_dir,
        data_root=services.settings.data_root,
    )
    assert runner.run(max_jobs=1) == 1
    done = get_job(client, job_id)
    assert done["state"] == "succeeded", done["error"]
    kinds = [event["kind"] for event in done["events"]]
    assert kinds[-4:] == ["published", "quantizing", "quantized", "succeeded"]
    assert done["request"]["quantize"]["calibration_images"] == 3

    int8 = store.load("tiny", done["result"]["version"]).manifest
    float_child = store.manifest("tiny", int8.lineage.parent_version)
    assert (int8.precision, float_child.precision) == ("int8", "float32")
    assert (int8.lineage.method, int8.lineage.job_id) == ("quantize", job_id)
    assert float_child.lineage.parent_version == 1
    assert int8.lineage.settings["calibration"]["images"] == 3
    assert len(int8.lineage.settings["excluded_nodes"]) == 1  # the stem's conv
    assert store.aliases("tiny")["candidate"] == int8.version
