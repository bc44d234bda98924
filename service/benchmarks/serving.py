"""Serving benchmark: the raw ONNX Runtime session against the service end to end over HTTP.

Same machine, same run, same model version and session settings. First the raw session in this
process: time per strip at batch 1, and the best throughput over batch sizes 1..MAX_BATCH. Then
the service as its own process (uvicorn on 127.0.0.1, a fresh SQLite database, the batcher as
configured): one client's latency percentiles, and throughput with 1, 4 and 8 concurrent
clients, each posting a grey PNG strip as a camera gateway does. Goals: one client's p50 within
1.15x the raw session, 8 clients' throughput at least 0.9x the raw session's best.

CPU time per strip (every thread of the process) is reported beside the wall times: on a
machine shared with other work, wall times follow the neighbours' load, CPU time far less.
"""

from __future__ import annotations

import gc
import io
import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from service.benchmarks.http_load import Server, concurrent_clients, post_strips, serving
from service.config import Settings
from service.db.migrate import upgrade
from service.inference.inspector import ONNX_FILE
from service.inference.preprocess import prepare_batch
from service.inference.runtime import OnnxSegmenter
from service.store import ModelStore

GOAL_P50_RATIO = 1.15
GOAL_THROUGHPUT_RATIO = 0.9
PNG = "image/png"


def bench_serving(
    settings: Settings,
    *,
    requests: int = 200,
    per_client: int = 48,
    concurrency: Sequence[int] = (1, 4, 8),
    raw_strips: int = 40,
) -> dict[str, object]:
    """Run both halves and return the summary (see the module docstring)."""
    store = ModelStore(settings.model_store)
    version = store.load(settings.model_name, settings.model_alias)
    spec = version.manifest.input
    strip = _strip(settings.data_root, (spec.height, spec.width))
    body = _png(strip)
    raw = _raw_session(version.file(ONNX_FILE), prepare_batch([strip], spec), settings, raw_strips)
    gc.collect()  # the raw session's memory goes before the service starts
    service = _service(settings, body, requests, per_client, concurrency)
    best = max(raw["throughput_per_s"].values())
    top = max(concurrency)
    p50_ratio = service["one_client"]["p50_ms"] / raw["batch_1_p50_ms"]
    throughput_ratio = service["throughput_per_s"][top] / best
    return {
        "model": {
            "name": version.manifest.name,
            "version": version.manifest.version,
            "alias": settings.model_alias,
            "architecture": version.manifest.architecture.model_dump(exclude={"layer_shapes"}),
            "gmacs": round(version.manifest.metrics.macs / 1e9, 2),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_name(),
            "python": platform.python_version(),
        },
        "settings": {
            "max_batch": settings.max_batch,
            "max_wait_ms": settings.max_wait_ms,
            "onnx_threads": settings.onnx_threads or os.cpu_count(),
            "onnx_spinning": settings.onnx_spinning,
            "onnx_providers": list(settings.onnx_providers),
            "body": f"grey PNG {spec.width}x{spec.height}, {len(body)} bytes",
        },
        "raw_session": raw,
        "service": service,
        "ratios": {
            "p50_vs_raw_batch_1": round(p50_ratio, 3),
            "p50_goal": GOAL_P50_RATIO,
            "p50_met": p50_ratio <= GOAL_P50_RATIO,
            f"throughput_{top}_clients_vs_raw_best": round(throughput_ratio, 3),
            "throughput_goal": GOAL_THROUGHPUT_RATIO,
            "throughput_met": throughput_ratio >= GOAL_THROUGHPUT_RATIO,
            "cpu_per_request_one_client_vs_raw_batch_1": round(
                service["cpu_ms_per_request"]["one_client"] / raw["cpu_ms_per_strip"][1], 3
            ),
        },
    }


def _raw_session(
    model_path: Path, plane: np.ndarray, settings: Settings, strips: int
) -> dict[str, object]:
    """Session time per strip at batch 1 and strips per second at every batch size."""
    session = OnnxSegmenter(
        model_path, settings.onnx_providers, settings.onnx_threads or None, settings.onnx_spinning
    )
    batch_1: list[float] = []
    throughput: dict[int, float] = {}
    cpu_ms: dict[int, float] = {}
    for size in range(1, settings.max_batch + 1):
        batch = np.repeat(plane, size, axis=0)
        for _ in range(2):  # warm-up, as the service does for every size
            session(batch)
        runs = max(3, strips // size)
        cpu_start = time.process_time()
        times = [_seconds(session, batch) for _ in range(runs)]
        cpu_ms[size] = round((time.process_time() - cpu_start) * 1000.0 / (runs * size), 2)
        if size == 1:
            batch_1 = times
        throughput[size] = round(size / statistics.median(times), 2)
    return {
        "batch_1_p50_ms": round(statistics.median(batch_1) * 1000.0, 2),
        "batch_1_mean_ms": round(statistics.fmean(batch_1) * 1000.0, 2),
        "throughput_per_s": throughput,
        "best_batch": max(throughput, key=throughput.__getitem__),
        "cpu_ms_per_strip": cpu_ms,
    }


def _service(
    settings: Settings, body: bytes, requests: int, per_client: int, concurrency: Sequence[int]
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        database = f"sqlite:///{Path(tmp) / 'inspections.db'}"
        upgrade(database)
        env = {
            "DATABASE_URL": database,
            "SPOOL_DIR": str(Path(tmp) / "spool"),
            "MAX_BATCH": str(settings.max_batch),
            "MAX_WAIT_MS": str(settings.max_wait_ms),
            "ONNX_THREADS": str(settings.onnx_threads),
            "ONNX_SPINNING": json.dumps(settings.onnx_spinning),
            "ONNX_PROVIDERS": json.dumps(list(settings.onnx_providers)),
            "API_KEYS": "[]",  # open, which serve allows on loopback only
        }
        args = ["--store", str(settings.model_store), "--model", settings.model_name]
        args += ["--alias", settings.model_alias, "--log-level", "warning"]
        with serving(args, env, Path(tmp) / "server.log") as server:
            ready_mib = server.resident_mib()
            post_strips(server.port, "/v1/inspect?camera_id=bench", body, PNG, 5)  # warm HTTP
            cpu_start = server.cpu_seconds()
            one = post_strips(server.port, "/v1/inspect?camera_id=bench", body, PNG, requests)
            cpu_ms = {"one_client": _per_request_ms(server.cpu_seconds() - cpu_start, requests)}
            throughput, batches, failures = {}, {}, len(one.failures)
            for clients in concurrency:
                before, cpu_start = _batch_totals(server), server.cpu_seconds()
                seconds, runs = concurrent_clients(
                    server.port, "/v1/inspect?camera_id=bench", body, PNG, clients, per_client
                )
                done = sum(len(run.latencies_ms) for run in runs)
                throughput[clients] = round(done / seconds, 2)
                batches[clients] = _mean_batch(before, _batch_totals(server))
                cpu_ms[f"{clients}_clients"] = _per_request_ms(
                    server.cpu_seconds() - cpu_start, done
                )
                failures += sum(len(run.failures) for run in runs)
            peak_mib = server.resident_mib("VmHWM")
            end_mib = server.resident_mib()
    return {
        "one_client": {"requests": requests, **_percentiles(one.latencies_ms)},
        "one_client_server_timings_p50_ms": {
            name: round(statistics.median(t[name] for t in one.server_timings_ms), 2)
            for name in one.server_timings_ms[0]
        },
        "throughput_per_s": throughput,
        "mean_batch_size": batches,
        "cpu_ms_per_request": cpu_ms,
        "requests_per_client": per_client,
        "failed_requests": failures,
        "resident_mib": {
            "ready": round(ready_mib, 1),
            "after_load": round(end_mib, 1),
            "peak": round(peak_mib, 1),
        },
    }


def _batch_totals(server: Server) -> tuple[float, float]:
    """(sum, count) of the batch-size histogram, over every model version."""
    _, body = server.get("/metrics")
    text = body.decode()
    total = sum(
        float(v) for v in re.findall(r"^strip_inspection_batch_size_sum\S* (\S+)$", text, re.M)
    )
    count = sum(
        float(v) for v in re.findall(r"^strip_inspection_batch_size_count\S* (\S+)$", text, re.M)
    )
    return total, count


def _per_request_ms(cpu_seconds: float, requests: int) -> float:
    return round(cpu_seconds * 1000.0 / max(requests, 1), 2)


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    runs = after[1] - before[1]
    return round((after[0] - before[0]) / runs, 2) if runs else 0.0


def _percentiles(latencies_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(latencies_ms), 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
    }


def _seconds(session: OnnxSegmenter, batch: np.ndarray) -> float:
    start = time.perf_counter()
    session(batch)
    return time.perf_counter() - start


def _strip(data_root: Path, shape: tuple[int, int]) -> np.ndarray:
    """A real Severstal strip when ../shared/data has one, else deterministic noise."""
    images = data_root / "severstal-samples" / "images"
    for path in sorted(images.glob("*.png")) if images.is_dir() else []:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
        if grey.shape == shape:
            return grey
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def _png(strip: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, "PNG")
    return buffer.getvalue()


def _cpu_name() -> str:
    with Path("/proc/cpuinfo").open() as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
