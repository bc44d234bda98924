"""Side-by-side latency: every predictor timed, and no call starts before the previous one's
spinning threads could have stopped."""

from __future__ import annotations

import itertools
import time

import numpy as np

from service.compression.latency import measure_side_by_side
from service.store.manifest import InputSpec


class Recorder:
    """A predictor that notes when each call starts and ends, in one shared log."""

    def __init__(self, name: str, log: list[tuple[str, float, float]]) -> None:
        self.name = name
        self.log = log

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        self.log.append((self.name, start, time.perf_counter()))
        return batch


def test_calls_are_interleaved_and_settled() -> None:
    log: list[tuple[str, float, float]] = []
    predictors = {name: Recorder(name, log) for name in ("source", "result")}
    spec = InputSpec(height=32, width=64, channels=1)
    timed = measure_side_by_side(predictors, spec, repeats=4, warmup=1, settle_s=0.01)
    assert {name: figures["repeats"] for name, figures in timed.items()} == {
        "source": 4,
        "result": 4,
    }
    measured = log[2:]  # after one warm-up call each
    assert [name for name, _, _ in measured[:4]] == ["source", "result", "result", "source"]
    gaps = [later[1] - earlier[2] for earlier, later in itertools.pairwise(measured)]
    assert min(gaps) >= 0.01
