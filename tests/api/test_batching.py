"""Batched serving with real models: warm-up of every batch size, strips of concurrent requests
in one session run, and post-processing identical to what evaluation scores."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import rle
from service.inference import runtime
from service.inference.inspector import Inspector, ServingOptions, lane_threads
from service.inference.postprocess import probabilities_to_masks, sigmoid
from service.inference.runtime import OnnxSegmenter
from service.store import ModelStore

from .conftest import AppFactory
from .strips import RAW, plain_strip, strip_with_block


def test_every_batch_size_is_warmed_before_the_version_is_ready(
    model_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    run = OnnxSegmenter.__call__

    def recording(self: OnnxSegmenter, batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return run(self, batch)

    monkeypatch.setattr(OnnxSegmenter, "__call__", recording)
    options = ServingOptions(max_batch=3, warmup_runs=2, threads=1)
    inspector = Inspector.load(model_store, "probe", "production", options)
    assert sizes == [1, 1, 2, 2, 3, 3]
    assert inspector.warmed


def test_with_lanes_both_sessions_are_warmed_at_every_batch_size(
    model_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[tuple[int, int]] = []
    run = OnnxSegmenter.__call__

    def recording(self: OnnxSegmenter, batch: np.ndarray) -> np.ndarray:
        runs.append((self.session.get_session_options().intra_op_num_threads, len(batch)))
        return run(self, batch)

    monkeypatch.setattr(OnnxSegmenter, "__call__", recording)
    options = ServingOptions(max_batch=2, warmup_runs=1, threads=2, runs=2)
    inspector = Inspector.load(model_store, "probe", "production", options)
    assert inspector.lane_segmenter is not None
    assert sorted(runs) == [(1, 1), (1, 2), (2, 1), (2, 2)]  # lanes: 2 threads / 2 runs


@pytest.mark.parametrize(
    ("runs", "threads", "offered", "lanes"),
    [
        (2, 2, ["CPUExecutionProvider"], 1),
        (2, 16, ["CPUExecutionProvider"], 8),
        (3, 2, ["CPUExecutionProvider"], 1),
        (1, 2, ["CPUExecutionProvider"], None),  # one run at a time
        (2, 1, ["CPUExecutionProvider"], None),  # nothing to split
        (2, 2, ["CUDAExecutionProvider", "CPUExecutionProvider"], None),
    ],
)
def test_lanes_split_the_cpu_threads_between_the_runs(
    runs: int, threads: int, offered: list[str], lanes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: offered)
    options = ServingOptions(
        providers=("CUDAExecutionProvider", "CPUExecutionProvider"), threads=threads, runs=runs
    )
    assert lane_threads(options) == lanes


@pytest.mark.parametrize("source", ["unet", "random"])
def test_defects_carry_exactly_the_evaluation_masks(model_store: ModelStore, source: str) -> None:
    inspector = Inspector.load(model_store, "unet-tiny", "production", ServingOptions(max_batch=1))
    rng = np.random.default_rng(0)
    if source == "unet":
        strip = rng.integers(0, 256, inspector.shape, dtype=np.uint8)
        logits = inspector.segmenter(inspector.prepare(strip.tobytes(), RAW)[np.newaxis])[0]
        # An untrained net is sure of nothing: centre its logits so that masks come out.
        logits -= np.median(logits, axis=(1, 2), keepdims=True)
    else:
        logits = rng.normal(-0.5, 1.0, (4, *inspector.shape)).astype(np.float32)
    probabilities = sigmoid(logits)
    expected = probabilities_to_masks(probabilities, inspector.manifest.postprocess)
    found = {d.class_id: d for d in inspector.find_defects(logits)}
    assert found, "the test needs at least one defect"
    for channel, rule in enumerate(
        sorted(inspector.manifest.postprocess, key=lambda r: r.class_id)
    ):
        mask = expected[channel].astype(bool)
        if not mask.any():
            assert rule.class_id not in found
            continue
        defect = found[rule.class_id]
        assert defect.area_px == int(mask.sum())
        np.testing.assert_array_equal(rle.decode(defect.encoded_pixels, inspector.shape), mask)
        assert defect.score == pytest.approx(float(probabilities[channel][mask].mean()), abs=1e-6)


def _batch_totals(client: TestClient) -> tuple[float, float]:
    text = client.get("/metrics").text
    sums = re.findall(
        r'^strip_inspection_batch_size_sum\{model="probe",version="1"\} (\S+)$', text, re.M
    )
    counts = re.findall(
        r'^strip_inspection_batch_size_count\{model="probe",version="1"\} (\S+)$', text, re.M
    )
    return float(sums[0]) if sums else 0.0, float(counts[0]) if counts else 0.0


@pytest.mark.parametrize(("max_batch", "runs"), [(8, 1), (2, 3)])
def test_strips_of_one_request_share_session_runs(
    running_app: AppFactory, sqlite_url: str, max_batch: int, runs: int
) -> None:
    # A long wait, so that strips still decoding are always waited for.
    with running_app(sqlite_url, max_batch=max_batch, max_wait_ms=1000) as client:
        before = _batch_totals(client)
        files = [("image", (f"s{i}", strip_with_block().tobytes(), RAW)) for i in range(5)]
        response = client.post("/v1/inspect/batch", params={"camera_id": "c"}, files=files)
        assert response.status_code == 200, response.text
        after = _batch_totals(client)
        assert (after[0] - before[0], after[1] - before[1]) == (5, runs)


def test_queue_and_batch_metrics_are_labelled_by_model_and_version(client: TestClient) -> None:
    client.post(
        "/v1/inspect",
        params={"camera_id": "c"},
        content=plain_strip().tobytes(),
        headers={"content-type": RAW},
    )
    text = client.get("/metrics").text
    for series in (
        'strip_inspection_queue_depth{model="probe",version="1"}',
        'strip_inspection_queue_wait_seconds_count{model="probe",version="1"}',
        'strip_inspection_batch_size_bucket{le="1.0",model="probe",version="1"}',
        'strip_inspection_inference_duration_seconds_count{model="probe",version="1"}',
        # A lone strip: nothing else pending, so it ran on every thread.
        'strip_inspection_session_runs_total{model="probe",session="every_thread",version="1"}',
    ):
        assert series in text, series


@pytest.mark.parametrize("threads", [1, 3])
def test_postprocess_threads_bounds_the_strips_finished_at_once(
    running_app: AppFactory, sqlite_url: str, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.inspection import inspect as inspection

    finish = inspection._postprocess_and_record
    lock, busy, most = threading.Lock(), [0], [0]
    # Each strip waits here until `threads` of them are finishing at once: with fewer threads
    # the barrier breaks and the strips fail; with more, `most` shows it.
    together = threading.Barrier(threads, timeout=30)

    def counting(*args: object) -> object:
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        try:
            together.wait()
            return finish(*args)  # type: ignore[arg-type]
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(inspection, "_postprocess_and_record", counting)
    with running_app(sqlite_url, postprocess_threads=threads, max_wait_ms=1000) as client:
        files = [("image", (f"s{i}", strip_with_block().tobytes(), RAW)) for i in range(6)]
        response = client.post("/v1/inspect/batch", params={"camera_id": "c"}, files=files)
        assert response.status_code == 200, response.text
        assert all(item["status"] == 200 for item in response.json()["items"])
    assert most[0] == threads
