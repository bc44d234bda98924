"""What publishing every result over MQTT costs an answer: the same strips to two API processes,
one without line events and one publishing to a real broker, one client at a time, in
alternating rounds, side by side.

    python -m benchmarks.line_events [--broker mqtt://127.0.0.1:1883] [--rounds 8 --per-round 40]

Also run with a broker that is down (``--broker mqtt://127.0.0.1:9``): answers must not wait.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from typing import Any

from benchmarks.harness import percentiles, print_json
from benchmarks.http_load import (
    INSPECT,
    add_model_options,
    concurrent_clients,
    served_settings,
    start_api,
)
from benchmarks.serving_inputs import encode_body, load_strips
from service.config import get_settings
from service.host import host_description

MODES = ("without", "with")


def bench_line_events(args: argparse.Namespace) -> dict[str, Any]:
    settings = served_settings(args)
    strips, described = load_strips(settings.data_root, (256, 1600), "real")
    body = encode_body(strips, "raw")
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    failures: dict[str, int] = dict.fromkeys(MODES, 0)
    with tempfile.TemporaryDirectory() as plain_tmp, tempfile.TemporaryDirectory() as mqtt_tmp:
        mqtt_env = {"MQTT_URL": args.broker, "MQTT_TOPIC_PREFIX": "bench-line-events"}
        with (
            start_api(settings, plain_tmp) as plain,
            start_api(settings, mqtt_tmp, extra_env=mqtt_env) as published,
        ):
            servers = {"without": plain, "with": published}
            for round_index in range(args.rounds):
                order = MODES if round_index % 2 == 0 else tuple(reversed(MODES))
                for mode in order:
                    _, runs = concurrent_clients(
                        servers[mode].port, INSPECT, body.data, body.kind, 1, args.per_round
                    )
                    latencies[mode] += [ms / 1000.0 for ms in runs[0].latencies_ms]
                    failures[mode] += len(runs[0].failures)
    summary = {mode: percentiles(latencies[mode]) for mode in MODES}
    return {
        "broker": args.broker,
        "strips": described,
        "requests_per_mode": len(latencies["with"]),
        "failures": failures,
        "latency": summary,
        "p50_ratio": summary["with"]["p50_ms"] / summary["without"]["p50_ms"],
        "p99_ratio": summary["with"]["p99_ms"] / summary["without"]["p99_ms"],
        "round_p50_ratios": _round_ratios(latencies, args.per_round),
        "host": host_description(),
    }


def _round_ratios(latencies: dict[str, list[float]], per_round: int) -> list[float]:
    """Each round's p50 with over without: the spread says what noise is."""
    ratios = []
    for start in range(0, len(latencies["with"]), per_round):
        with_p50 = statistics.median(latencies["with"][start : start + per_round])
        without_p50 = statistics.median(latencies["without"][start : start + per_round])
        ratios.append(round(with_p50 / without_p50, 3))
    return ratios


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.line_events", description=__doc__)
    add_model_options(parser, get_settings())
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="MQTT_URL to publish to")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    parser.add_argument("--per-round", type=int, default=40, help="requests per mode and round")
    return parser


def main(argv: list[str] | None = None) -> int:
    print_json(bench_line_events(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
