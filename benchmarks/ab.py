"""Paired A/B of two commits of the service: which one serves faster, measured side by side.

``python -m benchmarks.ab A B [--rounds N] ...`` (two git refs) prints the comparison.

Single serving-benchmark runs on shared hosts drift by tens of percent between hours, so a
change worth a few percent shows only when both versions are measured in the same minutes.
Each ref is checked out in a git worktree and served as its own process (its own code,
migrations and SQLite database; its own model store unless the store is given as an absolute
path), both started outside the repository. Every round runs, for each server in turn (the
order alternating between rounds): concurrent clients posting strips (steady-state strips per
second, the server's CPU per request), then one client posting strips back to back (its p50).
Reported: each round's numbers, the median and geometric mean over rounds of B's over A's,
each side's one-client p50 and p99 over all its rounds' requests pooled (a round's few
requests have no p99 of their own), and the strips each server did not keep (its archive
fell behind or failed).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.harness import Tally, percentiles, print_json
from benchmarks.http_load import (
    INSPECT,
    Server,
    add_model_options,
    measure_clients,
    metric_sum,
    metrics_text,
    post_strips,
    served_settings,
    start_api,
)
from benchmarks.serving_inputs import Body, add_strip_options, encode_body, load_strips
from service.config import Settings, get_settings
from service.store import ModelStore

LABELS = ("a", "b")


def bench_ab(
    settings: Settings,
    *,
    repo: Path,
    refs: tuple[str, str],
    rounds: int = 8,
    clients: int = 8,
    per_client: int = 24,
    sequential: int = 40,
    body_format: str = "raw",
    strip_source: str = "real",
) -> dict[str, object]:
    """Serve ``refs`` (A, B) of the repository at ``repo`` side by side and compare them."""
    version = ModelStore(settings.model_store).load(settings.model_name, settings.model_alias)
    shape = (version.manifest.input.height, version.manifest.input.width)
    strips, source = load_strips(settings.data_root, shape, strip_source)
    body = encode_body(strips, body_format)
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp, contextlib.ExitStack() as stack:
        servers = []
        for label, ref in zip(LABELS, refs, strict=True):
            tree = stack.enter_context(_worktree(repo, ref, Path(tmp) / label))
            folder = Path(tmp) / f"{label}-run"
            folder.mkdir()
            servers.append(stack.enter_context(start_api(settings, str(folder), source=tree)))
        for server in servers:  # sets up each server's threads and caches
            post_strips(server.port, INSPECT, body.data, body.kind, 10)
        lone: dict[str, list[float]] = {label: [] for label in LABELS}
        measured = [
            _round(servers, body, clients, per_client, sequential, r, lone) for r in range(rounds)
        ]
        not_kept = {
            label: metric_sum(metrics_text(server), "strip_inspection_strips_not_kept_total")
            for label, server in zip(LABELS, servers, strict=True)
        }
    return {
        "refs": {label: _commit(repo, ref) for label, ref in zip(LABELS, refs, strict=True)},
        "strips": source,
        "body": body.kind,
        "rounds": measured,
        "b_over_a": {
            name: _summary([r["b"][key] / r["a"][key] for r in measured])
            for name, key in (("throughput", "per_s"), ("one_client_p50", "p50_ms"))
        },
        "cpu_ms_per_request_median": {
            label: round(statistics.median(r[label]["cpu_ms"] for r in measured), 2)
            for label in LABELS
        },
        "one_client_pooled_ms": {label: _p50_p99(lone[label]) for label in LABELS},
        "strips_not_kept": not_kept,
        "failed_requests": sum(r[label]["failed"] for r in measured for label in LABELS),
    }


def _p50_p99(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of latencies in milliseconds, cut as the serving benchmark cuts them."""
    cut = percentiles([ms / 1000.0 for ms in latencies_ms])
    return {"p50": cut["p50_ms"], "p99": cut["p99_ms"]}


def _round(
    servers: Sequence[Server],
    body: Body,
    clients: int,
    per_client: int,
    sequential: int,
    index: int,
    lone: dict[str, list[float]],
) -> dict[str, dict[str, float]]:
    """One round; each server's one-client latencies are added to ``lone``."""
    order = range(len(servers)) if index % 2 == 0 else reversed(range(len(servers)))
    result: dict[str, dict[str, float]] = {}
    for i in order:
        block = Tally()
        block.add(measure_clients(servers[i], body, clients, per_client))
        one = post_strips(servers[i].port, INSPECT, body.data, body.kind, sequential)
        lone[LABELS[i]].extend(one.latencies_ms)
        result[LABELS[i]] = {
            "per_s": block.rate(),
            "cpu_ms": block.cpu_ms(),
            "p50_ms": round(statistics.median(one.latencies_ms), 2),
            "failed": len(block.failures) + len(one.failures),
        }
    return result


def _summary(ratios: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(ratios), 3),
        "geomean": round(math.exp(statistics.fmean(map(math.log, ratios))), 3),
        "min": round(min(ratios), 3),
        "max": round(max(ratios), 3),
    }


@contextlib.contextmanager
def _worktree(repo: Path, ref: str, into: Path) -> Iterator[Path]:
    """``ref`` checked out (detached) at ``into``, removed afterwards."""
    _git(repo, "worktree", "add", "--detach", str(into), ref)
    try:
        yield into
    finally:
        _git(repo, "worktree", "remove", "--force", str(into))


def _commit(repo: Path, ref: str) -> dict[str, str]:
    return {"ref": ref, "commit": _git(repo, "rev-parse", "--short", ref).strip()}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ab",
        description="two commits of the service served and measured side by side",
    )
    parser.add_argument("a", help="git ref of A (the baseline), e.g. main or HEAD~1")
    parser.add_argument("b", help="git ref of B, e.g. HEAD")
    add_model_options(parser, get_settings())
    parser.add_argument(
        "--rounds", type=int, default=8, help="rounds, the servers' order alternating"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients per block")
    parser.add_argument("--per-client", type=int, default=24, help="requests per concurrent client")
    parser.add_argument("--requests", type=int, default=40, help="one client's requests per block")
    add_strip_options(parser, body="raw")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print_json(
        bench_ab(
            served_settings(args),
            repo=Path.cwd(),
            refs=(args.a, args.b),
            rounds=args.rounds,
            clients=args.clients,
            per_client=args.per_client,
            sequential=args.requests,
            body_format=args.body,
            strip_source=args.strips,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
