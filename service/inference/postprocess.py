"""Probabilities to defect masks: per-class threshold, then a minimum total area, then the
classification gate.

The minimum area applies to the whole mask of a class in a strip (the rule the Severstal
competition winners used): a few stray pixels above threshold are noise, not a defect. The gate
(their other rule) drops a class whose presence probability, from the model's presence head, is
under the class's gate threshold, whatever its pixels say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.store.manifest import ClassPostprocess


def gate_closed(rule: ClassPostprocess, presence: float | None) -> bool:
    """True when the rule's gate drops the class: a gate, a presence score, and the score
    under it. A model without a presence head, or a rule without a gate, is never gated."""
    return rule.gate is not None and presence is not None and presence < rule.gate


def probabilities_to_masks(
    probabilities: np.ndarray,
    postprocess: Sequence[ClassPostprocess],
    presence: np.ndarray | None = None,
) -> np.ndarray:
    """(C, H, W) probabilities (and (C,) presence probabilities of a gated model) -> (C, H, W)
    uint8 masks, classes ordered by id."""
    if probabilities.ndim != 3 or probabilities.shape[0] != len(postprocess):
        raise ValueError(
            f"expected ({len(postprocess)}, H, W) probabilities, got {probabilities.shape}"
        )
    masks = np.empty(probabilities.shape, dtype=np.uint8)
    for channel, rule in enumerate(sorted(postprocess, key=lambda r: r.class_id)):
        mask = probabilities[channel] > rule.threshold
        score = None if presence is None else float(presence[channel])
        if mask.sum() < rule.min_area or gate_closed(rule, score):
            mask[:] = False
        masks[channel] = mask
    return masks


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, in float32."""
    logits = logits.astype(np.float32, copy=False)
    return np.exp(-np.logaddexp(0.0, -logits)).astype(np.float32, copy=False)


SIGMOID_RELATIVE_ERROR = 2.0**-16
"""A generous bound on the relative error of ``sigmoid`` in float32 (it is a few 1e-7)."""


@dataclass(frozen=True)
class LogitCut:
    """``sigmoid(logits) > threshold`` for one class, decided in logit space.

    Below ``lower`` the float32 probability is surely at or under the threshold and above
    ``upper`` surely over it; only logits in the band between (about 1e-5 wide) get their
    sigmoid computed, by the very function evaluation uses, so the masks are exactly those of
    ``probabilities_to_masks(sigmoid(logits), rules)`` at a small fraction of the cost.
    """

    threshold: np.float32
    lower: np.float32
    upper: np.float32
    min_area: int

    @classmethod
    def of(cls, rule: ClassPostprocess) -> LogitCut:
        # ``probabilities > rule.threshold`` compares in float32: the threshold is rounded too.
        threshold = np.float32(rule.threshold)
        low = float(threshold) / (1.0 + SIGMOID_RELATIVE_ERROR)
        high = float(threshold) / (1.0 - SIGMOID_RELATIVE_ERROR)
        lower = np.nextafter(np.float32(_logit(low)), np.float32(-np.inf))
        upper = np.float32(np.inf) if high >= 1.0 else np.float32(_logit(high))
        cut = cls(threshold, lower, np.nextafter(upper, np.float32(np.inf)), rule.min_area)
        cut.check()
        return cut

    def check(self, span: int = 4096) -> None:
        """Refuse a band that does not hold the flip on the float32 values just outside it."""
        below, above = _steps_from(self.lower, -span), _steps_from(self.upper, span)
        if (sigmoid(below) > self.threshold).any() or not (sigmoid(above) > self.threshold).all():
            raise ArithmeticError(f"sigmoid flips outside the band kept for {self.threshold}")

    def select(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) float32 logits -> (bool mask of the pixels over the threshold, their logits).

        One pass over the logits: the pixels at or above ``lower`` are gathered (the score needs
        their logits anyway), and only where some of them lie in the band, under ``upper``, are
        those decided by their sigmoid: cheaper than thresholding at both edges and gathering
        afterwards.
        """
        mask = logits >= self.lower
        values = logits[mask]
        if values.size and values.min() <= self.upper:
            over = values > self.upper
            band = ~over
            over[band] = sigmoid(values[band]) > self.threshold
            mask[mask] = over
            values = values[over]
        return mask, values


def mean_probability(logits: np.ndarray) -> float:
    """The mean of ``sigmoid(logits)``, as 1 / (1 + exp(-x)) in float32 summed in float64.

    numpy vectorises float32 ``exp`` (not ``tanh``, nor the log1p of ``sigmoid``): about 2 ns
    a pixel against 5 through tanh, 30 through ``sigmoid``. exp(-x) overflows to inf for
    x < -88, where 1 / (1 + inf) = 0 is the right probability.
    """
    if logits.size == 0:
        raise ValueError("the mean probability of no pixels")
    with np.errstate(over="ignore"):
        denominators = np.exp(-logits.astype(np.float32, copy=False))
    denominators += np.float32(1.0)
    np.reciprocal(denominators, out=denominators)
    return float(denominators.mean(dtype=np.float64))


def _logit(probability: float) -> float:
    return float(np.log(probability) - np.log1p(-probability))


def _steps_from(edge: np.float32, count: int) -> np.ndarray:
    """The ``abs(count)`` float32 values next to ``edge``, upwards (count > 0) or downwards."""
    if not np.isfinite(edge):
        return np.zeros(0, dtype=np.float32)
    # Sign-magnitude bits as a signed integer that increases with the float's value.
    bits = int(np.array(edge, dtype=np.float32).view(np.int32))
    key = bits if bits >= 0 else -(bits & 0x7FFFFFFF)
    keys = key + np.sign(count) * np.arange(1, abs(count) + 1, dtype=np.int64)
    raw = np.where(keys >= 0, keys, -keys | 0x80000000).astype(np.uint32)
    values = raw.view(np.float32)
    return values[np.isfinite(values)]
