"""Serving benchmark: the raw ONNX Runtime session against the service end to end over HTTP.

Same machine, same run, same model version and session settings: the raw session in this
process (time per strip at batch 1; strips per second at every batch size 1..MAX_BATCH, called
from one thread and from SESSION_RUNS threads at once, as the service may: the best of all is
the throughput reference) and the service as its own process (uvicorn on 127.0.0.1, a fresh
SQLite database, the batcher as configured; one client's latency percentiles; throughput with 1,
4 and 8 concurrent clients, each posting a grey PNG strip as a camera gateway does, or its raw
buffer, every request a new frame with its own frame_id). Goals: one client's
p50 within 1.15x the raw session, 8 clients' throughput at least 0.9x the raw session's best.

The two sides are measured interleaved, so that a host whose speed drifts (these shared machines
do, by 20% within minutes) weighs on both alike: one client's requests each right after one raw
batch-1 run; the throughputs in alternating rounds of short blocks, the service's counted
while every client is busy (``steady_state``). CPU time per strip (every
thread of the process) is reported beside the wall times, as it follows the neighbours' load
far less.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from service.api.app import serving_options
from service.benchmarks.http_load import (
    Server,
    StripPoster,
    concurrent_clients,
    post_strips,
    serving,
    steady_state,
)
from service.benchmarks.serving_inputs import BODIES, STRIP_SOURCES
from service.config import Settings
from service.data.synthetic import HEIGHT as SYNTHETIC_HEIGHT
from service.data.synthetic import WIDTH as SYNTHETIC_WIDTH
from service.data.synthetic import render_strip
from service.db.migrate import upgrade
from service.inference.decode import RAW_MEDIA_TYPE
from service.inference.inspector import ONNX_FILE, lane_threads, session_threads
from service.inference.preprocess import prepare_batch
from service.inference.runtime import OnnxSegmenter
from service.store import ModelStore

K = TypeVar("K", bound=Hashable)

GOAL_P50_RATIO = 1.15
GOAL_THROUGHPUT_RATIO = 0.9
SYNTHETIC_STRIPS = 20
INSPECT = "/v1/inspect?camera_id=bench"


def bench_serving(
    settings: Settings,
    *,
    requests: int = 200,
    per_client: int = 48,
    concurrency: Sequence[int] = (1, 4, 8),
    raw_strips: int = 40,
    rounds: int = 8,
    body_format: str = "png",
    strip_source: str = "real",
) -> dict[str, object]:
    """Measure both sides, interleaved in ``rounds``, and return the summary.

    ``body_format``: ``png`` (a grey PNG, as gateways usually send) or ``raw`` (the 8-bit
    buffer as ``application/octet-stream``: no decoding). ``strip_source``: ``real`` (the
    Severstal sample strips in ../shared/data) or ``synthetic`` (strips of the generator the
    shipped model was trained on). Each client posts the strips in turn, from its own place in
    the list, as a camera sends a stream of different frames: what a strip costs after the
    session run (post-processing, recording, the response) depends on its masks. The raw
    session's time does not depend on the pixels; it runs the first strip.
    """
    version = ModelStore(settings.model_store).load(settings.model_name, settings.model_alias)
    spec = version.manifest.input
    strips, source = _strips(settings.data_root, (spec.height, spec.width), strip_source)
    body = _body(strips, body_format)
    with (
        _RawSession(version.file(ONNX_FILE), prepare_batch(strips[:1], spec), settings) as raw,
        tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp,
        _server(settings, tmp) as server,
    ):
        ready_mib = server.resident_mib()
        post_strips(server.port, INSPECT, body.data, body.kind, 5)  # sets up the threads
        raw_1, one, timings = _paired_one_client(raw, server, body, requests)
        raw_n = {
            (size, count, threads): _Tally()
            for count, threads in raw.ways()
            for size in range(1, settings.max_batch + 1)
        }
        served = {clients: _Tally() for clients in concurrency}
        order = _round_robin(
            {key: max(2, -(-raw_strips // (rounds * key[0] * key[1]))) for key in raw_n}
        )
        for _ in range(rounds):
            for size, count, threads in order:
                raw_n[size, count, threads].add(raw.timed_together(size, count, threads))
            for clients, tally in served.items():
                tally.add(_clients(server, body, clients, max(2, per_client // rounds)))
        memory = {
            "ready": ready_mib,
            "after_load": server.resident_mib(),
            "peak": server.resident_mib("VmHWM"),
        }
    raw_rates = {key: tally.rate() for key, tally in raw_n.items()}
    best = max(raw_rates, key=raw_rates.__getitem__)
    service_rates = {clients: tally.rate() for clients, tally in served.items()}
    top = max(concurrency)
    ratios = {
        "p50_vs_raw_batch_1": round(statistics.median(one.seconds) / raw_1.median(), 3),
        f"throughput_{top}_clients_vs_raw_best": round(service_rates[top] / raw_rates[best], 3),
        "cpu_per_request_one_client_vs_raw_batch_1": round(
            one.cpu_per_item() / raw_1.cpu_per_item(), 3
        ),
    }
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
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "settings": {
            "max_batch": settings.max_batch,
            "max_wait_ms": settings.max_wait_ms,
            "onnx_threads": raw.wide,
            "session_runs": raw.runs,
            "lane_threads": lane_threads(serving_options(settings)),
            "onnx_spinning": settings.onnx_spinning,
            "onnx_providers": list(settings.onnx_providers),
            "body": f"{body.kind}, grey {spec.width}x{spec.height}, "
            f"{statistics.median(map(len, body.data)):.0f} bytes (median)",
            "strips": source,
            "rounds": rounds,
        },
        "raw_session": {
            "batch_1_p50_ms": round(raw_1.median() * 1000.0, 2),
            "batch_1_mean_ms": round(statistics.fmean(raw_1.seconds) * 1000.0, 2),
            "throughput_per_s": {
                _way(way): {key[0]: raw_rates[key] for key in raw_n if key[1:] == way}
                for way in raw.ways()
            },
            "best": {
                "batch": best[0],
                "callers": best[1],
                "threads_per_run": best[2],
                "per_s": raw_rates[best],
            },
            "cpu_ms_per_strip": {"batch_1_one_client": raw_1.cpu_ms()}
            | {
                _way(way): {k[0]: tally.cpu_ms() for k, tally in raw_n.items() if k[1:] == way}
                for way in raw.ways()
            },
        },
        "service": {
            "one_client": {"requests": one.items, **_percentiles(one.seconds)},
            "one_client_server_timings_p50_ms": {
                name: round(statistics.median(t[name] for t in timings), 2) for name in timings[0]
            },
            "throughput_per_s": service_rates,
            "mean_batch_size": {c: t.mean_batch() for c, t in served.items()},
            "cpu_ms_per_request": {"one_client": one.cpu_ms()}
            | {f"{c}_clients": t.cpu_ms() for c, t in served.items()},
            "failed_requests": len(one.failures) + sum(len(t.failures) for t in served.values()),
            "resident_mib": {name: round(mib, 1) for name, mib in memory.items()},
        },
        "ratios": ratios
        | {
            "p50_goal": GOAL_P50_RATIO,
            "p50_met": ratios["p50_vs_raw_batch_1"] <= GOAL_P50_RATIO,
            "throughput_goal": GOAL_THROUGHPUT_RATIO,
            "throughput_met": ratios[f"throughput_{top}_clients_vs_raw_best"]
            >= GOAL_THROUGHPUT_RATIO,
        },
    }


@dataclass
class _Run:
    """One timed block: the wall seconds of each timed unit, items done in them, CPU seconds
    used for ``cpu_items`` items (the whole block's)."""

    seconds: list[float]
    items: int
    cpu_s: float
    failures: list[str] = field(default_factory=list)
    batched: tuple[float, float] = (0.0, 0.0)
    """(strips, session runs) the server's batcher saw during the block."""
    cpu_items: int | None = None
    """Items the CPU time was spent on; None: ``items``."""


@dataclass
class _Tally:
    """Blocks of one kind, summed over the rounds."""

    seconds: list[float] = field(default_factory=list)
    items: int = 0
    cpu_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    batched: tuple[float, float] = (0.0, 0.0)
    cpu_items: int = 0

    def add(self, run: _Run) -> None:
        self.seconds += run.seconds
        self.items += run.items
        self.cpu_s += run.cpu_s
        self.cpu_items += run.items if run.cpu_items is None else run.cpu_items
        self.failures += run.failures
        self.batched = (self.batched[0] + run.batched[0], self.batched[1] + run.batched[1])

    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self) -> float:
        return round(self.items / sum(self.seconds), 2)

    def cpu_per_item(self) -> float:
        return self.cpu_s / self.cpu_items

    def cpu_ms(self) -> float:
        return round(self.cpu_per_item() * 1000.0, 2)

    def mean_batch(self) -> float:
        strips, runs = self.batched
        return round(strips / runs, 2) if runs else 0.0


def _paired_one_client(
    raw: _RawSession, server: Server, body: _Body, requests: int
) -> tuple[_Tally, _Tally, list[dict[str, float]]]:
    """``requests`` sequential requests, each right after one raw batch-1 run: (raw tally,
    service tally with the server's CPU, the server's timings)."""
    raw_1, one = _Tally(), _Tally()
    poster = StripPoster(server.port, INSPECT, body.data, body.kind)
    try:
        for _ in range(requests):
            raw_1.add(raw.timed(1, 1))
            cpu_start = server.cpu_seconds()
            poster.post()
            one.cpu_s += server.cpu_seconds() - cpu_start
    finally:
        poster.close()
    latencies = [ms / 1000.0 for ms in poster.run.latencies_ms]
    one.add(_Run(latencies, len(latencies), 0.0, poster.run.failures))
    return raw_1, one, poster.run.server_timings_ms


def _clients(server: Server, body: _Body, clients: int, per_client: int) -> _Run:
    """Concurrent clients; their steady-state throughput (see ``steady_state``), and the
    server's CPU and batching over the whole block."""
    before = _batch_totals(server)  # scraped outside the CPU window: it is not serving work
    cpu_start = server.cpu_seconds()
    _, runs = concurrent_clients(server.port, INSPECT, body.data, body.kind, clients, per_client)
    cpu_s = server.cpu_seconds() - cpu_start
    after = _batch_totals(server)
    finished, seconds = steady_state(runs)
    return _Run(
        [seconds],
        finished,
        cpu_s,
        [failure for run in runs for failure in run.failures],
        (after[0] - before[0], after[1] - before[1]),
        cpu_items=sum(len(run.latencies_ms) for run in runs),
    )


class _RawSession:
    """The version's ONNX Runtime sessions as the service makes them (every thread, and the
    lane session where it has lanes), warmed at every size; called from one thread, or from as
    many at once as the service's SESSION_RUNS."""

    def __init__(self, model_path: Path, plane: np.ndarray, settings: Settings) -> None:
        options = serving_options(settings)
        self.runs = options.runs
        self.callers = ThreadPoolExecutor(options.runs, thread_name_prefix="raw-caller")
        self.wide = session_threads(options)
        self.sessions = {
            threads: OnnxSegmenter(model_path, options.providers, threads, options.spinning)
            for threads in {self.wide, lane_threads(options) or self.wide}
        }
        self.batches = {
            size: np.repeat(plane, size, axis=0) for size in range(1, settings.max_batch + 1)
        }
        for session, batch in itertools.product(self.sessions.values(), self.batches.values()):
            for _ in range(settings.warmup_runs):
                session(batch)

    def __enter__(self) -> _RawSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.callers.shutdown()

    def ways(self) -> list[tuple[int, int]]:
        """(callers, intra-op threads of each run): the session with every thread from one
        caller and from SESSION_RUNS callers, the lane session from SESSION_RUNS callers."""
        wide = sorted({(1, self.wide), (self.runs, self.wide)})
        return wide + [(self.runs, threads) for threads in self.sessions if threads != self.wide]

    def timed_together(self, size: int, callers: int, threads: int) -> _Run:
        """One run of ``size`` strips on each of ``callers`` threads at the same time, through
        the session with ``threads`` intra-op threads."""
        session = self.sessions[threads]
        if callers == 1:
            return self.timed(size, 1, session)
        batch = self.batches[size]
        cpu_start, start = time.process_time(), time.perf_counter()
        for future in [self.callers.submit(session, batch) for _ in range(callers)]:
            future.result()
        seconds = time.perf_counter() - start
        return _Run([seconds], callers * size, time.process_time() - cpu_start)

    def timed(self, size: int, runs: int, session: OnnxSegmenter | None = None) -> _Run:
        """``runs`` session calls on a batch of ``size`` strips, each timed (by default through
        the session with every thread, as a lone strip in the service)."""
        session = session or self.sessions[self.wide]
        batch, seconds = self.batches[size], []
        cpu_start = time.process_time()
        for _ in range(runs):
            start = time.perf_counter()
            session(batch)
            seconds.append(time.perf_counter() - start)
        return _Run(seconds, runs * size, time.process_time() - cpu_start)


def _way(way: tuple[int, int]) -> str:
    callers, threads = way
    return f"{callers}_callers_{threads}_threads_each"


def _round_robin(runs: dict[K, int]) -> list[K]:
    """The kinds of run (batch size, callers, threads) in turn until each has its number of
    runs: every kind sees the same minutes of the host (the best of kinds measured one after
    the other favours whichever got the fast minute)."""
    order: list[K] = []
    left = dict(runs)
    while left:
        for key in list(left):
            order.append(key)
            left[key] -= 1
            if left[key] == 0:
                del left[key]
    return order


@contextlib.contextmanager
def _server(settings: Settings, tmp: str, source: Path | None = None) -> Iterator[Server]:
    """The API on a fresh SQLite database, open (no keys: loopback only), as configured.

    ``source``: a checkout whose code serves (and migrates the database), with its own model
    store when ``settings.model_store`` is relative. The process then starts in ``tmp``: started
    in a checkout, ``python -m service`` would import that checkout's package, whatever
    PYTHONPATH says.
    """
    folder = Path(tmp)
    database = f"sqlite:///{folder / 'inspections.db'}"
    env = {
        "DATABASE_URL": database,
        "SPOOL_DIR": str(folder / "spool"),
        "IMAGE_DIR": str(folder / "images"),  # kept strips go with the run, not into ./var
        "MAX_BATCH": str(settings.max_batch),
        "MAX_WAIT_MS": str(settings.max_wait_ms),
        "SESSION_RUNS": str(settings.session_runs),
        "POSTPROCESS_THREADS": str(settings.postprocess_threads),
        "WARMUP_RUNS": str(settings.warmup_runs),
        "ONNX_THREADS": str(settings.onnx_threads),
        "ONNX_SPINNING": json.dumps(settings.onnx_spinning),
        "ONNX_PROVIDERS": json.dumps(list(settings.onnx_providers)),
        "API_KEYS": "[]",
    }
    store = settings.model_store
    if source is None:
        upgrade(database)
    else:
        env["PYTHONPATH"] = str(source)
        store = source / store if not store.is_absolute() else store
        subprocess.run(
            [sys.executable, "-m", "service", "migrate", "--database-url", database],
            env={**os.environ, **env},
            cwd=folder,
            check=True,
            capture_output=True,
        )
    args = ["--store", str(store), "--model", settings.model_name]
    args += ["--alias", settings.model_alias, "--log-level", "warning"]
    cwd = None if source is None else folder
    with serving(args, env, folder / "server.log", cwd=cwd) as server:
        yield server


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


def _percentiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(seconds) * 1000.0, 2),
        "p95_ms": round(cuts[94] * 1000.0, 2),
        "p99_ms": round(cuts[98] * 1000.0, 2),
        "mean_ms": round(statistics.fmean(seconds) * 1000.0, 2),
    }


def _strips(data_root: Path, shape: tuple[int, int], source: str) -> tuple[list[np.ndarray], str]:
    """The strips to post and a line saying what they are.

    ``real``: the Severstal sample strips of the model's shape, else (../shared/data missing)
    one strip of deterministic noise, and the line says so. ``synthetic``: the generator's
    first ``SYNTHETIC_STRIPS`` seeds (it draws 256x1600 strips only).
    """
    if source == "synthetic":
        if shape != (SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH):
            raise ValueError(
                f"synthetic strips are {SYNTHETIC_HEIGHT}x{SYNTHETIC_WIDTH}; the model takes "
                f"{shape[0]}x{shape[1]}"
            )
        strips = [render_strip(np.random.default_rng(seed))[0] for seed in range(SYNTHETIC_STRIPS)]
        return strips, f"synthetic: seeds 0..{SYNTHETIC_STRIPS - 1} in turn"
    if source != "real":
        raise ValueError(f"strip source {source!r}: choose one of {', '.join(STRIP_SOURCES)}")
    images = data_root / "severstal-samples" / "images"
    strips = []
    for path in sorted(images.glob("*.png")) if images.is_dir() else []:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
        if grey.shape == shape:
            strips.append(grey)
    if strips:
        return strips, f"real: {len(strips)} Severstal strips from {images} in turn"
    noise = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return [noise], f"noise: no {shape[0]}x{shape[1]} Severstal strips under {images}"


@dataclass(frozen=True)
class _Body:
    kind: str
    data: list[bytes]


def _body(strips: Sequence[np.ndarray], body_format: str) -> _Body:
    if body_format == "raw":
        return _Body(RAW_MEDIA_TYPE, [strip.tobytes() for strip in strips])
    if body_format != "png":
        raise ValueError(f"body format {body_format!r}: choose one of {', '.join(BODIES)}")
    return _Body("image/png", [_png(strip) for strip in strips])


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
