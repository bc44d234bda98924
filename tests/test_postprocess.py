"""Thresholding in logit space (LogitCut) gives exactly the masks of sigmoid-then-threshold."""

from __future__ import annotations

import numpy as np
import pytest

from service.inference.postprocess import (
    LogitCut,
    mean_probability,
    probabilities_to_masks,
    sigmoid,
)
from service.store.manifest import ClassPostprocess

THRESHOLDS = [0.5, 0.3, 0.05, 0.9, 0.999, 1e-6, 0.71, 0.123456789]


def _cut(threshold: float, min_area: int = 0) -> LogitCut:
    return LogitCut.of(ClassPostprocess(class_id=1, threshold=threshold, min_area=min_area))


def _neighbourhood(centre: np.float32, span: int) -> np.ndarray:
    """The 2 * span + 1 consecutive float32 values around ``centre``."""
    bits = int(np.array(centre, dtype=np.float32).view(np.int32))
    key = bits if bits >= 0 else -(bits & 0x7FFFFFFF)
    keys = np.arange(key - span, key + span + 1, dtype=np.int64)
    return np.where(keys >= 0, keys, -keys | 0x80000000).astype(np.uint32).view(np.float32)


def _flip(cut: LogitCut) -> np.float32:
    """The smallest float32 whose sigmoid is over the threshold (bisection in the band)."""
    low, high = np.float32(cut.lower), np.float32(cut.upper)
    while np.nextafter(low, high) != high:
        middle = np.float32((float(low) + float(high)) / 2)
        if middle in (low, high):
            middle = np.nextafter(low, high)
        if sigmoid(np.array([middle], np.float32))[0] > cut.threshold:
            high = middle
        else:
            low = middle
    return high


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_every_float_around_the_flip_and_the_band_edges_agrees(threshold: float) -> None:
    cut = _cut(threshold)
    for centre in (_flip(cut), cut.lower, cut.upper):
        if not np.isfinite(centre):
            continue
        values = _neighbourhood(np.float32(centre), 200_000)
        expected = sigmoid(values) > np.float32(threshold)
        np.testing.assert_array_equal(cut.select(values[np.newaxis])[0], expected[np.newaxis])


def test_the_band_is_thin() -> None:
    for threshold in (0.05, 0.3, 0.5, 0.9):
        cut = _cut(threshold)
        assert 0 < float(cut.upper) - float(cut.lower) < 1e-3


def test_strips_of_logits_give_the_evaluation_masks() -> None:
    rng = np.random.default_rng(0)
    rules = [
        ClassPostprocess(class_id=k, threshold=t, min_area=a)
        for k, t, a in ((1, 0.5, 0), (2, 0.35, 50), (3, 0.8, 10**6), (4, 0.6, 3))
    ]
    cuts = [LogitCut.of(rule) for rule in rules]
    logits = rng.normal(-2.0, 4.0, size=(4, 256, 1600)).astype(np.float32)
    # Pile values onto the thresholds, where rounding decides.
    near = rng.random(logits.shape) < 0.05
    centres = np.array([float(np.float32(c.lower) / 2 + np.float32(c.upper) / 2) for c in cuts])
    jitter = rng.normal(0.0, 1e-5, logits.shape)
    logits[near] = (centres[:, None, None] + jitter).astype(np.float32)[near]
    expected = probabilities_to_masks(sigmoid(logits), rules)
    for channel, cut in enumerate(cuts):
        mask, values = cut.select(logits[channel])
        np.testing.assert_array_equal(values, logits[channel][mask])
        if np.count_nonzero(mask) < cut.min_area:
            mask[:] = False
        np.testing.assert_array_equal(mask, expected[channel].astype(bool))


def test_mean_probability_is_the_mean_sigmoid() -> None:
    logits = np.random.default_rng(2).normal(0.0, 6.0, 100_000).astype(np.float32)
    logits[:3] = (-1000.0, 1000.0, 0.0)
    expected = float(sigmoid(logits).astype(np.float64).mean())
    assert mean_probability(logits) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError):
        mean_probability(logits[:0])
