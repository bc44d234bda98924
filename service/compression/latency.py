"""Latency of several predictors measured side by side: same machine, same batch, same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import numpy as np

from service.evaluation.run import Predictor
from service.inference.preprocess import prepare_batch
from service.store.manifest import InputSpec

SPIN_SETTLE_S = 0.05
"""How long ONNX Runtime's intra-op threads may go on spinning after a run (with spinning on,
its default): waited out before every timed call, so one session's spinning never takes a core
from the next one timed."""


def measure_side_by_side(
    predictors: Mapping[str, Predictor],
    spec: InputSpec,
    batch_size: int = 1,
    repeats: int = 20,
    warmup: int = 3,
    settle_s: float = SPIN_SETTLE_S,
) -> dict[str, dict[str, float]]:
    """Median and p90 milliseconds per predictor on one random full-size batch.

    The predictors take turns call by call, in an order that rotates every round, so a drift in
    the machine's load or clock speed falls on all of them alike; each timed call starts
    ``settle_s`` after the previous one ended (see ``SPIN_SETTLE_S``).
    """
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (spec.height, spec.width), dtype=np.uint8)] * batch_size
    batch = prepare_batch(images, spec)
    names = list(predictors)
    for _ in range(warmup):
        for name in names:
            predictors[name](batch)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settle_s)
            start = time.perf_counter()
            predictors[name](batch)
            timings[name].append((time.perf_counter() - start) * 1000)
    return {name: _summary(values, batch_size) for name, values in timings.items()}


def _summary(timings: list[float], batch_size: int) -> dict[str, float]:
    timings = sorted(timings)
    return {
        "median_ms": statistics.median(timings),
        "p90_ms": timings[int(0.9 * (len(timings) - 1))],
        "batch_size": batch_size,
        "repeats": len(timings),
    }
