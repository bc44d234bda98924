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
from .job_runs import TINY_JOB, app_worker, get_job, job_app, job_store, post_job

QUANTIZE = {"calibration_images": 3, "keep_float": ["stem"], "min_mask_dice": 0.5}


@pytest.fixture(scope="module")
def client(
    running_app: AppFactory,
    tmp_path_factory: pytest.TempPathFactory,
    source_store: ModelStore,
    synthetic_root: Path,
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("job_quantize")
    with job_app(
        running_app, folder, job_store(folder / "store", source_store), synthetic_root
    ) as client:
        yield client


def test_a_job_with_the_quantize_stage_publishes_an_int8_child_of_its_float_result(
    client: TestClient,
) -> None:
    store: ModelStore = client.app.state.services.store  # type: ignore[attr-defined]
    job_id = post_job(client, {**TINY_JOB, "quantize": QUANTIZE})["job_id"]
    assert app_worker(client).run(max_jobs=1) == 1
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
