"""Probabilities to defect masks: per-class threshold, then a minimum total area.

The minimum area applies to the whole mask of a class in a strip (the rule the Severstal
competition winners used): a few stray pixels above threshold are noise, not a defect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.store.manifest import ClassPostprocess


def probabilities_to_masks(
    probabilities: np.ndarray, postprocess: Sequence[ClassPostprocess]
) -> np.ndarray:
    """(C, H, W) probabilities -> (C, H, W) uint8 masks, classes ordered by id."""
    if probabilities.ndim != 3 or probabilities.shape[0] != len(postprocess):
        raise ValueError(
            f"expected ({len(postprocess)}, H, W) probabilities, got {probabilities.shape}"
        )
    masks = np.empty(probabilities.shape, dtype=np.uint8)
    for channel, rule in enumerate(sorted(postprocess, key=lambda r: r.class_id)):
        mask = probabilities[channel] > rule.threshold
        if mask.sum() < rule.min_area:
            mask[:] = False
        masks[channel] = mask
    return masks


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, in float32."""
    logits = logits.astype(np.float32, copy=False)
    return np.exp(-np.logaddexp(0.0, -logits)).astype(np.float32, copy=False)
