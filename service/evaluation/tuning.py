"""Choose each class's probability threshold and minimum area on a validation split.

Per image and class we keep, for every candidate threshold, the predicted area and its
intersection with the truth; every minimum area is then scored from those counts without
touching the pixels again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.evaluation.metrics import pair_dice
from service.store.manifest import ClassPostprocess

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 + 0.05 * k, 2) for k in range(17))


def min_area_candidates(height: int, width: int) -> tuple[int, ...]:
    """0, then powers of two from 16 up to 2% of the image."""
    limit = height * width // 50
    candidates = [0]
    area = 16
    while area <= limit:
        candidates.append(area)
        area *= 2
    return tuple(candidates)


@dataclass
class PostprocessTuner:
    num_classes: int
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    _areas: list[np.ndarray] = field(default_factory=list)
    _intersections: list[np.ndarray] = field(default_factory=list)
    _truth: list[np.ndarray] = field(default_factory=list)

    def add(self, probabilities: np.ndarray, truth: np.ndarray) -> None:
        """Add (C, H, W) or (N, C, H, W) probabilities with their binary truth masks."""
        if probabilities.ndim == 3:
            probabilities, truth = probabilities[None], truth[None]
        truth = truth.astype(bool, copy=False)
        areas = np.empty((*probabilities.shape[:2], len(self.thresholds)), dtype=np.int64)
        inter = np.empty_like(areas)
        for k, threshold in enumerate(self.thresholds):
            predicted = probabilities > threshold
            areas[..., k] = predicted.sum(axis=(2, 3))
            inter[..., k] = (predicted & truth).sum(axis=(2, 3))
        self._areas.append(areas)
        self._intersections.append(inter)
        self._truth.append(truth.sum(axis=(2, 3)))

    def best(self, min_areas: tuple[int, ...]) -> tuple[list[ClassPostprocess], list[float]]:
        """The rule per class that maximises its mean Dice, and that Dice."""
        if not self._areas:
            raise ValueError("no validation images were added")
        areas = np.concatenate(self._areas).astype(np.float64)  # (N, C, T)
        inter = np.concatenate(self._intersections).astype(np.float64)
        truth = np.concatenate(self._truth).astype(np.float64)[..., None]  # (N, C, 1)
        kept = pair_dice(inter, areas, np.broadcast_to(truth, areas.shape))
        dropped = (truth == 0).astype(np.float64)
        rules, scores = [], []
        for class_index in range(self.num_classes):
            grid = np.stack(
                [
                    np.where(
                        areas[:, class_index] < m, dropped[:, class_index], kept[:, class_index]
                    ).mean(axis=0)
                    for m in min_areas
                ]
            )  # (M, T)
            m_index, t_index = np.unravel_index(int(np.argmax(grid)), grid.shape)
            rules.append(
                ClassPostprocess(
                    class_id=class_index + 1,
                    threshold=self.thresholds[t_index],
                    min_area=min_areas[m_index],
                )
            )
            scores.append(float(grid[m_index, t_index]))
        return rules, scores
