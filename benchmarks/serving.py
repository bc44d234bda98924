"""Serving benchmark: the raw ONNX Runtime session against the service end to end over HTTP.

``python -m benchmarks.serving [--body png|raw] [--strips real|synthetic] ...`` prints the summary.

Same machine, same run, same model version and session settings: the raw session in this
process (time per strip at batch 1; strips per second at every batch size 1..MAX_BATCH, called
from one thread and from SESSION_RUNS threads at once, as the service may: the best of all is
the throughput reference) and the service as its own process (uvicorn on 127.0.0.1, a fresh
SQLite database, the batcher as configured; one client's latency percentiles; throughput with 1,
4 and 8 concurrent clients, each posting a grey PNG strip as a camera gateway does, or its raw
buffer, every request a new frame with its own frame_id). Goals: one client's
p50 within 1.15x the raw session, 8 clients' throughput at least 0.9x the raw session's best.

The two sides are measured interleaved, so that a host whose speed drifts (shared machines do,
within minutes) weighs on both alike: one client's requests each right after one raw
batch-1 run; the throughputs in alternating rounds of short blocks, the service's counted
while every client is busy (``steady_state``). CPU time per strip (every
thread of the process) is reported beside the wall times, as it follows the neighbours' load
far less.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from benchmarks.harness import Tally, TimedRun, percentiles, print_json
from benchmarks.http_load import (
    INSPECT,
    Server,
    StripPoster,
    add_model_options,
    measure_clients,
    post_strips,
    served_settings,
    start_api,
)
from benchmarks.serving_inputs import Body, add_strip_options, encode_body, load_strips
from service.api.app import serving_options
from service.config import Settings, get_settings
from service.host import host_description
from service.inference.inspector import ONNX_FILE, lane_threads, session_threads
from service.inference.preprocess import prepare_batch
from service.inference.runtime import OnnxSegmenter
from service.store import ModelStore

K = TypeVar("K", bound=Hashable)

GOAL_P50_RATIO = 1.15
GOAL_THROUGHPUT_RATIO = 0.9


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

    ``body_format`` is a key of ``BODIES``, ``strip_source`` one of ``STRIP_SOURCES`` (see
    ``benchmarks.serving_inputs``). The raw session's time does not depend on the pixels; it
    runs the first strip.
    """
    version = ModelStore(settings.model_store).load(settings.model_name, settings.model_alias)
    spec = version.manifest.input
    strips, source = load_strips(settings.data_root, (spec.height, spec.width), strip_source)
    body = encode_body(strips, body_format)
    with (
        _RawSession(version.file(ONNX_FILE), prepare_batch(strips[:1], spec), settings) as raw,
        tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp,
        start_api(settings, tmp) as server,
    ):
        ready_mib = server.resident_mib()
        post_strips(server.port, INSPECT, body.data, body.kind, 5)  # sets up the threads
        raw_1, one, timings = _paired_one_client(raw, server, body, requests)
        raw_n = {
            (size, count, threads): Tally()
            for count, threads in raw.ways()
            for size in range(1, settings.max_batch + 1)
        }
        served = {clients: Tally() for clients in concurrency}
        order = round_robin(
            {key: max(2, -(-raw_strips // (rounds * key[0] * key[1]))) for key in raw_n}
        )
        for _ in range(rounds):
            for size, count, threads in order:
                raw_n[size, count, threads].add(raw.timed_together(size, count, threads))
            for clients, tally in served.items():
                tally.add(measure_clients(server, body, clients, max(2, per_client // rounds)))
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
            **host_description(),
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
            "one_client": {"requests": one.items, **percentiles(one.seconds)},
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


def _paired_one_client(
    raw: _RawSession, server: Server, body: Body, requests: int
) -> tuple[Tally, Tally, list[dict[str, float]]]:
    """``requests`` sequential requests, each right after one raw batch-1 run: (raw tally,
    service tally with the server's CPU, the server's timings)."""
    raw_1, one = Tally(), Tally()
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
    one.add(TimedRun(latencies, len(latencies), 0.0, poster.run.failures))
    return raw_1, one, poster.run.server_timings_ms


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

    def timed_together(self, size: int, callers: int, threads: int) -> TimedRun:
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
        return TimedRun([seconds], callers * size, time.process_time() - cpu_start)

    def timed(self, size: int, runs: int, session: OnnxSegmenter | None = None) -> TimedRun:
        """``runs`` session calls on a batch of ``size`` strips, each timed (by default through
        the session with every thread, as a lone strip in the service)."""
        session = session or self.sessions[self.wide]
        batch, seconds = self.batches[size], []
        cpu_start = time.process_time()
        for _ in range(runs):
            start = time.perf_counter()
            session(batch)
            seconds.append(time.perf_counter() - start)
        return TimedRun(seconds, runs * size, time.process_time() - cpu_start)


def _way(way: tuple[int, int]) -> str:
    callers, threads = way
    return f"{callers}_callers_{threads}_threads_each"


def round_robin(runs: dict[K, int]) -> list[K]:
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


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving",
        description="raw ONNX Runtime session vs the API over loopback HTTP",
    )
    add_model_options(parser, settings)
    parser.add_argument("--requests", type=int, default=200, help="one client's timed requests")
    parser.add_argument("--per-client", type=int, default=48, help="requests per concurrent client")
    add_strip_options(parser, body="png")
    parser.add_argument(
        "--max-batch", type=int, default=settings.max_batch, help="batcher size (env MAX_BATCH)"
    )
    parser.add_argument(
        "--max-wait-ms", type=float, default=settings.max_wait_ms, help="env MAX_WAIT_MS"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=settings.onnx_threads,
        help="ONNX Runtime intra-op threads, 0 = one per core (env ONNX_THREADS)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = served_settings(
        args, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, onnx_threads=args.threads
    )
    print_json(
        bench_serving(
            settings,
            requests=args.requests,
            per_client=args.per_client,
            body_format=args.body,
            strip_source=args.strips,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
