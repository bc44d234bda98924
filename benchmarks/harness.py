"""What every benchmark shares: the host it ran on, results files merged stage by stage, timed
blocks summed over rounds, and the JSON a benchmark prints."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.store.files import write_json


def read_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def update_results(path: Path, **fields: Any) -> dict[str, Any]:
    """Set top-level fields of the results file, keeping every method's figures."""
    results = read_results(path)
    results.update(fields)
    results.setdefault("methods", {})
    write_json(path, results)
    return results


def update_method(
    path: Path, method: str, figures: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """Set one method's figures (and top-level ``fields`` such as the commit)."""
    results = read_results(path)
    results.update(fields)
    results.setdefault("methods", {})[method] = figures
    write_json(path, results)
    return results


def print_json(payload: object) -> None:
    """What a benchmark's command prints: its summary, indented."""
    print(json.dumps(payload, indent=2, default=str))


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p95, p99 and mean of timings in seconds, in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(seconds) * 1000.0, 2),
        "p95_ms": round(cuts[94] * 1000.0, 2),
        "p99_ms": round(cuts[98] * 1000.0, 2),
        "mean_ms": round(statistics.fmean(seconds) * 1000.0, 2),
    }


@dataclass
class TimedRun:
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
    cpu_by_thread: Counter[str] = field(default_factory=Counter)
    """Of ``cpu_s``, the seconds of each kind of thread (where the block measured them)."""


@dataclass
class Tally:
    """Timed runs of one kind, summed over the rounds."""

    seconds: list[float] = field(default_factory=list)
    items: int = 0
    cpu_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    batched: tuple[float, float] = (0.0, 0.0)
    cpu_items: int = 0
    cpu_by_thread: Counter[str] = field(default_factory=Counter)

    def add(self, run: TimedRun) -> None:
        self.seconds += run.seconds
        self.items += run.items
        self.cpu_s += run.cpu_s
        self.cpu_by_thread.update(run.cpu_by_thread)
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

    def cpu_ms_by_thread(self) -> dict[str, float]:
        """CPU milliseconds per item of each kind of thread, the busiest first."""
        return {
            name: round(seconds / self.cpu_items * 1000.0, 2)
            for name, seconds in self.cpu_by_thread.most_common()
        }

    def mean_batch(self) -> float:
        strips, runs = self.batched
        return round(strips / runs, 2) if runs else 0.0
