"""The competition Dice and friends, accumulated image by image.

Definitions (DESIGN.md "Metric"):
- ``dice``: mean Dice over every (image, class) pair; a pair with both masks empty scores 1.
- ``dice_per_class``: the same mean restricted to one class.
- ``dice_nonempty``: mean Dice over the pairs where at least one mask is non-empty, i.e.
  without the free points that empty-empty pairs give.
- ``miou``: per class, intersection over union of all pixels of the set, then the mean over
  classes (background excluded).
- ``miou_with_background``: the same mean with background as one more class (a pixel is
  background where no class mask covers it), as PGA-Net and DEU-Net count mIoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SCORE_KEYS = (
    "dice",
    "dice_per_class",
    "dice_nonempty",
    "miou",
    "miou_with_background",
    "iou_per_class",
)
"""The scores a version reports (the rest of a result is counts)."""


def pair_dice(intersection: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice per pair from pixel counts; both-empty pairs score 1."""
    total = predicted + truth
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(total > 0, 2.0 * intersection / np.maximum(total, 1), 1.0)
    return dice


@dataclass
class DiceAccumulator:
    """Collects per-(image, class) pixel counts; cheap enough for full-resolution strips."""

    class_names: Sequence[str]
    intersections: list[np.ndarray] = field(default_factory=list)
    predicted_areas: list[np.ndarray] = field(default_factory=list)
    truth_areas: list[np.ndarray] = field(default_factory=list)
    background: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    """Background pixels: [predicted and true, predicted, true]."""

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Add one image's (C, H, W) or a batch's (N, C, H, W) binary masks."""
        if predicted.shape != truth.shape:
            raise ValueError(f"shape mismatch: {predicted.shape} vs {truth.shape}")
        if predicted.ndim == 3:
            predicted, truth = predicted[None], truth[None]
        predicted = predicted.astype(bool, copy=False)
        truth = truth.astype(bool, copy=False)
        self.intersections.append((predicted & truth).sum(axis=(2, 3)))
        self.predicted_areas.append(predicted.sum(axis=(2, 3)))
        self.truth_areas.append(truth.sum(axis=(2, 3)))
        predicted_background = ~predicted.any(axis=1)
        true_background = ~truth.any(axis=1)
        self.background += [
            np.count_nonzero(predicted_background & true_background),
            np.count_nonzero(predicted_background),
            np.count_nonzero(true_background),
        ]

    def result(self) -> dict[str, object]:
        if not self.intersections:
            raise ValueError("no images were evaluated")
        inter = np.concatenate(self.intersections).astype(np.float64)
        pred = np.concatenate(self.predicted_areas).astype(np.float64)
        truth = np.concatenate(self.truth_areas).astype(np.float64)
        dice = pair_dice(inter, pred, truth)
        nonempty = (pred + truth) > 0
        union = (pred + truth - inter).sum(axis=0)
        iou = np.where(union > 0, inter.sum(axis=0) / np.maximum(union, 1), 1.0)
        background_inter, background_pred, background_truth = self.background.astype(np.float64)
        background_union = background_pred + background_truth - background_inter
        background_iou = background_inter / background_union if background_union > 0 else 1.0
        return {
            "dice": float(dice.mean()),
            "dice_per_class": {
                name: float(dice[:, k].mean()) for k, name in enumerate(self.class_names)
            },
            "dice_nonempty": float(dice[nonempty].mean()) if nonempty.any() else None,
            "miou": float(iou.mean()),
            "miou_with_background": float((iou.sum() + background_iou) / (len(iou) + 1)),
            "iou_background": float(background_iou),
            "iou_per_class": {name: float(iou[k]) for k, name in enumerate(self.class_names)},
            "images": int(dice.shape[0]),
            "pairs_nonempty": int(nonempty.sum()),
        }
