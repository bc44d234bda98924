"""Serving benchmark: the best a plain ONNX Runtime loop does on this host against the service
end to end over HTTP.

``python -m benchmarks.serving [--body raw|jpeg|png] [--strips real|synthetic] ...`` prints the
summary.

Same machine, same run, same model version. The raw side, in this process, is the best of what a
plain loop could do: for one strip at a time, every intra-op thread count with ONNX Runtime's
default spinning (``on``), without (``off``) and as the service runs (``ONNX_SPINNING``); for
throughput, each of those sessions at every batch size 1..MAX_BATCH from one caller and from
SESSION_RUNS callers at once. The service runs as its own process (uvicorn on 127.0.0.1, a fresh
SQLite database, the batcher as configured): one client's latency percentiles, throughput with
1, 4 and 8 concurrent clients, each posting a grey PNG or JPEG strip or its raw buffer, every
request a new frame with its own frame_id. Goals: one client's p50 within 1.15x and its p99
within 1.5x the best raw batch-1 session's, 8 clients' throughput at least 0.9x the raw best.
Beside the ratios, the service's CPU per strip outside the session run, and its CPU per
request split by thread (the names ``service.threads`` gives them: the event loop, the
inference lanes, post-processing and recording, the image archive's writer). And the stack's
floor: a bare ASGI app under the same uvicorn (``benchmarks.bare_http``) posted the same bodies,
each right after the service's request; the raw session's p50 plus that floor plus the
service's own decoding and post-processing medians is the least one-client p50 (and ratio) a
service on this stack could reach before it records anything; the session's CPU per strip
under load plus the bare app's CPU per request and the same decoding and post-processing, the
most throughput such a service could reach on these cores.

The two sides are measured interleaved, so that a host whose speed drifts (shared machines do,
within minutes) weighs on both alike: one client's requests each right after one batch-1 run
of every raw session; the throughputs in alternating rounds of short blocks, the service's
counted while every client is busy (``steady_state``). A session that spins after its runs is
given time to stop before anything else is timed. CPU time per strip (every thread of the
process) is reported beside the wall times, as it follows the neighbours' load far less.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from benchmarks.harness import Tally, TimedRun, percentiles, print_json
from benchmarks.http_load import (
    INSPECT,
    ClientRun,
    Server,
    StripPoster,
    add_model_options,
    bare_http,
    measure_clients,
    post_strips,
    served_settings,
    start_api,
)
from benchmarks.serving_inputs import Body, add_strip_options, encode_body, load_strips
from service.api.app import serving_options
from service.compression.latency import SPIN_SETTLE_S
from service.config import Settings, get_settings
from service.host import host_description
from service.inference.inspector import ONNX_FILE, lane_threads, session_threads
from service.inference.preprocess import prepare_batch
from service.inference.runtime import OnnxSegmenter
from service.inference.spinning import SpinMode
from service.store import ModelStore

K = TypeVar("K", bound=Hashable)
Way = tuple[int, int, str]
"""How the raw session is driven: (callers at once, intra-op threads of each run, spinning)."""
RAW_SPIN_MODES: tuple[SpinMode, ...] = ("on", "off")

GOAL_P50_RATIO = 1.15
GOAL_THROUGHPUT_RATIO = 0.9
GOAL_P99_RATIO = 1.5


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
        bare_http(Path(tmp) / "bare.log") as bare,
    ):
        ready_mib = server.resident_mib()
        for target in (server, bare):  # sets up the threads
            post_strips(target.port, INSPECT, body.data, body.kind, 5)
        singles, one, floor, timings = _paired_one_client(raw, server, bare, body, requests)
        raw_n = {
            (size, *way): Tally() for way in raw.ways() for size in range(1, settings.max_batch + 1)
        }
        served = {clients: Tally() for clients in concurrency}
        order = round_robin(
            {key: max(2, -(-raw_strips // (rounds * key[0] * key[1]))) for key in raw_n}
        )
        for _ in range(rounds):
            for size, *way in order:
                raw_n[(size, *way)].add(raw.timed_together(size, tuple(way)))
            for clients, tally in served.items():
                tally.add(measure_clients(server, body, clients, max(2, per_client // rounds)))
        memory = {
            "ready": ready_mib,
            "after_load": server.resident_mib(),
            "peak": server.resident_mib("VmHWM"),
        }
    best_single = min(singles, key=lambda key: singles[key].median())
    raw_1, own = singles[best_single], singles[raw.service_key]
    served_p50_ms = {
        name: round(statistics.median(t[name] for t in timings), 2) for name in timings[0]
    }
    raw_p50_ms = raw_1.median() * 1000.0
    least_ms = raw_p50_ms + statistics.median(floor.seconds) * 1000.0 + _work_ms(served_p50_ms)
    raw_rates = {key: tally.rate() for key, tally in raw_n.items()}
    best = max(raw_rates, key=raw_rates.__getitem__)
    service_rates = {clients: tally.rate() for clients, tally in served.items()}
    top = max(concurrency)
    under_load = _loaded_way(raw, served[top].mean_batch(), settings.max_batch)
    least_cpu_ms = raw_n[under_load].cpu_ms() + floor.cpu_ms() + _work_ms(served_p50_ms)
    most_per_s = (os.cpu_count() or 1) * 1000.0 / least_cpu_ms
    ratios = {
        "p50_vs_raw_best_batch_1": round(statistics.median(one.seconds) / raw_1.median(), 3),
        "p99_vs_raw_best_batch_1": round(
            percentiles(one.seconds)["p99_ms"] / percentiles(raw_1.seconds)["p99_ms"], 3
        ),
        f"throughput_{top}_clients_vs_raw_best": round(service_rates[top] / raw_rates[best], 3),
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
            "lane_threads": raw.lane,
            "onnx_spinning": settings.onnx_spinning,
            "onnx_providers": list(settings.onnx_providers),
            "body": f"{body.kind}, grey {spec.width}x{spec.height}, "
            f"{statistics.median(map(len, body.data)):.0f} bytes (median)",
            "strips": source,
            "rounds": rounds,
        },
        "raw_session": {
            "batch_1": {
                _single(key): percentiles(tally.seconds) | {"cpu_ms_per_strip": tally.cpu_ms()}
                for key, tally in singles.items()
            },
            "batch_1_best": _single(best_single),
            "batch_1_as_served": _single(raw.service_key),
            "throughput_per_s": {
                _way(way): {key[0]: raw_rates[key] for key in raw_n if key[1:] == way}
                for way in raw.ways()
            },
            "best": {"batch": best[0], "way": _way(best[1:]), "per_s": raw_rates[best]},
            "cpu_ms_per_strip": {
                _way(way): {k[0]: tally.cpu_ms() for k, tally in raw_n.items() if k[1:] == way}
                for way in raw.ways()
            },
        },
        "service": {
            "one_client": {"requests": one.items, **percentiles(one.seconds)},
            "one_client_server_timings_p50_ms": served_p50_ms,
            "throughput_per_s": service_rates,
            "mean_batch_size": {c: t.mean_batch() for c, t in served.items()},
            "cpu_ms_per_request": {"one_client": one.cpu_ms()}
            | {f"{c}_clients": t.cpu_ms() for c, t in served.items()},
            "cpu_ms_per_request_by_thread": {
                "one_client": one.cpu_ms_by_thread(),
                f"{top}_clients": served[top].cpu_ms_by_thread(),
            },
            "cpu_ms_outside_session": {
                "one_client": round(one.cpu_ms() - own.cpu_ms(), 2),
                f"{top}_clients": round(served[top].cpu_ms() - raw_n[under_load].cpu_ms(), 2),
            },
            "failed_requests": len(one.failures)
            + len(floor.failures)
            + sum(len(t.failures) for t in served.values()),
            "resident_mib": {name: round(mib, 1) for name, mib in memory.items()},
        },
        "floor": {
            "bare_http_one_client": percentiles(floor.seconds),
            "least_p50_ms": round(least_ms, 2),
            "least_p50_ratio": round(least_ms / raw_p50_ms, 3),
            "bare_http_cpu_ms_per_request": floor.cpu_ms(),
            "least_cpu_ms_per_strip_under_load": round(least_cpu_ms, 2),
            f"most_throughput_{top}_clients_vs_raw_best": round(most_per_s / raw_rates[best], 3),
        },
        "ratios": ratios
        | {
            "p50_goal": GOAL_P50_RATIO,
            "p50_met": ratios["p50_vs_raw_best_batch_1"] <= GOAL_P50_RATIO,
            "p99_goal": GOAL_P99_RATIO,
            "p99_met": ratios["p99_vs_raw_best_batch_1"] <= GOAL_P99_RATIO,
            "throughput_goal": GOAL_THROUGHPUT_RATIO,
            "throughput_met": ratios[f"throughput_{top}_clients_vs_raw_best"]
            >= GOAL_THROUGHPUT_RATIO,
        },
    }


def _loaded_way(raw: _RawSession, mean_batch: float, max_batch: int) -> tuple[int, int, int, str]:
    """The raw run most like the service's under load (its mean batch, in its lanes where it
    has them): the session's CPU per strip there, against which the service's is compared."""
    size = min(max_batch, max(1, round(mean_batch)))
    if raw.lane is None:
        return (size, 1, *raw.service_key)
    return (size, raw.runs, raw.lane, _effective(raw.lane, raw.service_mode))


def _paired_one_client(
    raw: _RawSession, server: Server, bare: Server, body: Body, requests: int
) -> tuple[dict[tuple[int, str], Tally], Tally, Tally, list[dict[str, float]]]:
    """``requests`` sequential requests, each right after one batch-1 run of every raw session
    and followed by the same body posted to the bare app: (the raw sessions' tallies, the
    service's with the server's CPU, the bare app's, the server's timings)."""
    singles, one, floor = {key: Tally() for key in raw.sessions}, Tally(), Tally()
    poster = StripPoster(server.port, INSPECT, body.data, body.kind)
    bare_poster = StripPoster(bare.port, INSPECT, body.data, body.kind)
    threads_start = server.cpu_seconds_by_thread()
    try:
        for _ in range(requests):
            for key, tally in singles.items():
                tally.add(raw.timed(1, 1, key))
            one.cpu_s += _post_counting_cpu(poster, server)
            floor.cpu_s += _post_counting_cpu(bare_poster, bare)
    finally:
        poster.close()
        bare_poster.close()
    by_thread = server.cpu_seconds_by_thread_since(threads_start)
    one.add(_client_run(poster.run, by_thread))
    floor.add(_client_run(bare_poster.run))
    return singles, one, floor, poster.run.server_timings_ms


def _post_counting_cpu(poster: StripPoster, server: Server) -> float:
    """One post; the CPU seconds ``server`` spent meanwhile."""
    cpu_start = server.cpu_seconds()
    poster.post()
    return server.cpu_seconds() - cpu_start


def _client_run(run: ClientRun, cpu_by_thread: Counter[str] | None = None) -> TimedRun:
    """A client's requests as a timed block (its CPU is counted per post by the caller)."""
    seconds = [ms / 1000.0 for ms in run.latencies_ms]
    by_thread = cpu_by_thread or Counter()
    return TimedRun(seconds, len(seconds), 0.0, run.failures, cpu_by_thread=by_thread)


def _work_ms(served_p50_ms: dict[str, float]) -> float:
    """What the service must do to a strip beside the session run and HTTP, at its medians:
    decoding and post-processing (the durable write comes on top and is not counted)."""
    return served_p50_ms["decode"] + served_p50_ms["postprocess"]


class _RawSession:
    """The version's ONNX Runtime sessions at every thread count and spinning mode that could be
    the best a plain ONNX Runtime loop does on this host (ONNX Runtime's default, spinning
    ``on``, and ``off``; the service's own mode too), warmed at every size; called from one
    thread, or from as many at once as the service's SESSION_RUNS."""

    def __init__(self, model_path: Path, plane: np.ndarray, settings: Settings) -> None:
        options = serving_options(settings)
        self.runs = options.runs
        self.callers = ThreadPoolExecutor(options.runs, thread_name_prefix="raw-caller")
        self.wide = session_threads(options)
        self.lane = lane_threads(options)
        self.service_mode: SpinMode = options.spinning
        self.service_key = (self.wide, _effective(self.wide, options.spinning))
        thread_counts = {*range(1, (os.cpu_count() or 1) + 1), self.wide, self.lane or self.wide}
        modes = {*RAW_SPIN_MODES, options.spinning}
        self.sessions = {
            (threads, mode): OnnxSegmenter(model_path, options.providers, threads, mode)
            for threads, mode in {(t, _effective(t, m)) for t in thread_counts for m in modes}
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

    def ways(self) -> list[Way]:
        """(callers, intra-op threads of each run, spinning): every session from one caller and
        from SESSION_RUNS callers at once (the lanes' way, when the service has lanes)."""
        return sorted((count, *key) for count in {1, self.runs} for key in self.sessions)

    def timed_together(self, size: int, way: Way) -> TimedRun:
        """One run of ``size`` strips on each of the way's callers at the same time."""
        callers, threads, mode = way
        if callers == 1:
            return self.timed(size, 1, (threads, mode))
        session, batch = self.sessions[threads, mode], self.batches[size]
        cpu_start, start = time.process_time(), time.perf_counter()
        for future in [self.callers.submit(session, batch) for _ in range(callers)]:
            future.result()
        seconds = time.perf_counter() - start
        cpu_s = time.process_time() - cpu_start
        _settle(mode)
        return TimedRun([seconds], callers * size, cpu_s)

    def timed(self, size: int, runs: int, key: tuple[int, str]) -> TimedRun:
        """``runs`` calls on a batch of ``size`` strips through the session ``key`` (threads,
        spinning), each timed."""
        session, batch, seconds = self.sessions[key], self.batches[size], []
        cpu_start = time.process_time()
        for _ in range(runs):
            start = time.perf_counter()
            session(batch)
            seconds.append(time.perf_counter() - start)
        cpu_s = time.process_time() - cpu_start
        _settle(key[1])
        return TimedRun(seconds, runs * size, cpu_s)


def _effective(threads: int, mode: SpinMode) -> SpinMode:
    """A session of one thread has no pool to spin: its modes are all ``off``."""
    return "off" if threads == 1 else mode


def _settle(mode: str) -> None:
    """After runs whose threads go on spinning (``on``), wait that out, so that it takes no core
    from whatever is timed next (the service's request, another session)."""
    if mode == "on":
        time.sleep(SPIN_SETTLE_S)


def _way(way: Way) -> str:
    callers, threads, mode = way
    return f"{callers}_callers_{threads}_threads_spin_{mode}"


def _single(key: tuple[int, str]) -> str:
    threads, mode = key
    return f"{threads}_threads_spin_{mode}"


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
