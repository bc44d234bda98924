"""``python -m benchmarks.serving``: the serving benchmark runs end to end on a tiny model."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.http_load import ClientRun, bare_http, steady_state
from benchmarks.serving import bench_serving, build_parser, round_robin
from benchmarks.serving_inputs import SYNTHETIC_STRIPS, load_strips
from service.config import Settings
from service.store import ModelStore


def test_options() -> None:
    args = build_parser().parse_args(["--requests", "50", "--max-batch", "4", "--max-wait-ms", "1"])
    assert (args.requests, args.max_batch, args.max_wait_ms, args.body, args.strips) == (
        50,
        4,
        1.0,
        "png",
        "real",
    )


@pytest.mark.subprocess
def test_a_small_run_reports_latency_throughput_memory_and_ratios(
    model_store: ModelStore, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,
        model_store=model_store.root,
        model_name="probe",
        data_root=tmp_path / "no-data",
        max_batch=2,
        onnx_threads=2,
        warmup_runs=1,
    )
    summary = bench_serving(settings, requests=20, per_client=3, concurrency=(1, 2), raw_strips=4)
    service = summary["service"]
    assert service["failed_requests"] == 0  # type: ignore[index]
    assert service["one_client"]["p50_ms"] > 0  # type: ignore[index]
    assert set(service["throughput_per_s"]) == {1, 2}  # type: ignore[index]
    assert service["resident_mib"]["ready"] > 10  # type: ignore[index]
    raw = summary["raw_session"]
    # The raw reference: every thread count with ONNX Runtime's default spinning, without, and
    # as the service runs (during_runs); one thread has no pool to spin (only "off").
    assert {"2_threads_spin_on", "2_threads_spin_off", "2_threads_spin_during_runs"} <= set(
        raw["batch_1"]  # type: ignore[index]
    )
    assert "1_threads_spin_on" not in raw["batch_1"]  # type: ignore[index]
    assert raw["batch_1_as_served"] == "2_threads_spin_during_runs"  # type: ignore[index]
    assert raw["batch_1_best"] in raw["batch_1"]  # type: ignore[index]
    # Each session from one caller and from as many at once as the service runs batches
    # (SESSION_RUNS, 2 by default), the lane session (2 threads / 2 runs) among them.
    assert {
        "1_callers_2_threads_spin_on",
        "2_callers_2_threads_spin_off",
        "2_callers_1_threads_spin_off",
    } <= set(raw["throughput_per_s"])  # type: ignore[index]
    assert set(raw["throughput_per_s"]["2_callers_1_threads_spin_off"]) == {1, 2}  # type: ignore[index]
    assert raw["best"]["per_s"] > 0  # type: ignore[index]
    assert {
        "p50_vs_raw_best_batch_1",
        "p99_vs_raw_best_batch_1",
        "throughput_2_clients_vs_raw_best",
    } <= set(summary["ratios"])  # type: ignore[arg-type]
    assert set(service["cpu_ms_outside_session"]) == {"one_client", "2_clients"}  # type: ignore[index]
    # The server's CPU split by its threads' OS-level names.
    by_thread = service["cpu_ms_per_request_by_thread"]  # type: ignore[index]
    assert set(by_thread) == {"one_client", "2_clients"}
    for block in by_thread.values():
        assert {"event loop", "postprocess", "image-archive"} <= set(block)
        assert any(name.startswith("infer-v") for name in block)
        assert all(ms >= 0 for ms in block.values())
    assert summary["settings"]["strips"].startswith("noise: no 256x1600 Severstal strips")  # type: ignore[index]
    # The stack's floor, measured in the same minutes: a bare app answers faster than the
    # service, and the least p50 the stack allows lies between the raw session and the service.
    floor = summary["floor"]
    bare_p50 = floor["bare_http_one_client"]["p50_ms"]  # type: ignore[index]
    assert 0 < bare_p50 < service["one_client"]["p50_ms"]  # type: ignore[index]
    assert floor["least_p50_ratio"] > 1  # type: ignore[index]
    raw_best_p50 = raw["batch_1"][raw["batch_1_best"]]["p50_ms"]  # type: ignore[index]
    assert floor["least_p50_ms"] > raw_best_p50 + bare_p50  # type: ignore[index]
    assert floor["bare_http_cpu_ms_per_request"] > 0  # type: ignore[index]
    assert 0 < floor["most_throughput_2_clients_vs_raw_best"] < 1.5  # type: ignore[index]


def test_real_strips_are_every_sample_of_the_model_shape(tmp_path: Path) -> None:
    images = tmp_path / "severstal-samples" / "images"
    images.mkdir(parents=True)
    for name, shape in (("a", (8, 16)), ("b", (8, 16)), ("c", (4, 4))):
        Image.fromarray(np.full(shape, ord(name), dtype=np.uint8)).save(images / f"{name}.png")
    strips, line = load_strips(tmp_path, (8, 16), "real")
    assert [int(strip[0, 0]) for strip in strips] == [ord("a"), ord("b")]
    assert line.startswith("real: 2 Severstal strips")


def test_synthetic_strips_come_from_the_training_generator(tmp_path: Path) -> None:
    strips, line = load_strips(tmp_path, (256, 1600), "synthetic")
    assert len(strips) == SYNTHETIC_STRIPS and line.startswith("synthetic")
    assert {strip.shape for strip in strips} == {(256, 1600)}
    assert len({strip.tobytes() for strip in strips}) == SYNTHETIC_STRIPS
    with pytest.raises(ValueError, match="synthetic strips are 256x1600"):
        load_strips(tmp_path, (32, 64), "synthetic")
    with pytest.raises(ValueError, match="choose one of"):
        load_strips(tmp_path, (256, 1600), "video")


def test_steady_state_counts_only_while_every_client_is_busy() -> None:
    runs = [ClientRun(finished_at=[1.0, 2.0, 3.0, 4.0]), ClientRun(finished_at=[1.5, 2.5, 3.5])]
    # From the last first answer (1.5) to the first last answer (3.5): 2.0, 3.0, 2.5 and 3.5.
    assert steady_state(runs) == (4, 2.0)
    # Windows that do not overlap: every answer after each client's first, over the block.
    assert steady_state([ClientRun(finished_at=[1.0, 2.0]), ClientRun(finished_at=[3.0])]) == (
        1,
        2.0,
    )


def test_raw_batch_sizes_take_turns() -> None:
    assert round_robin({1: 3, 2: 2, 8: 1}) == [1, 2, 8, 1, 2, 1]


@pytest.mark.subprocess
def test_the_bare_app_reads_the_whole_body_under_uvicorn(tmp_path: Path) -> None:
    with bare_http(tmp_path / "bare.log") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        body = bytes(400_000)
        connection.request("POST", "/v1/inspect?camera_id=c", body=body)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"bytes": len(body), "timings_ms": {}}
        connection.close()
