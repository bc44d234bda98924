"""Choose each class's probability threshold, minimum area and gate on a validation split.

Per image and class we keep, for every candidate threshold, the predicted area and its
intersection with the truth, and the presence probability of a gated model; every minimum area
and gate is then scored from those numbers without touching the pixels again. The three are
chosen together: a gate lets a lower pixel threshold find fainter defects without flagging
clean strips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.evaluation.metrics import pair_dice
from service.store.manifest import ClassPostprocess

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 + 0.05 * k, 2) for k in range(17))
GATE_CANDIDATES: tuple[float | None, ...] = (None, *(round(0.05 * k, 2) for k in range(1, 20)))
"""No gate, then presence thresholds 0.05..0.95."""


MIN_AREA_LIMIT = 1 / 8
"""The largest minimum area tried, as a share of the image. Some classes are large (magnetic
tile's uneven surfaces cover a quarter of a tile at the median) and so are a net's false
alarms on them (a tenth of a clean tile): a cap of 2% could not tell the two apart by size."""


def min_area_candidates(height: int, width: int) -> tuple[int, ...]:
    """0, then powers of two from 16 up to ``MIN_AREA_LIMIT`` of the image."""
    limit = int(height * width * MIN_AREA_LIMIT)
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
    _presence: list[np.ndarray] = field(default_factory=list)

    def add(
        self, probabilities: np.ndarray, truth: np.ndarray, presence: np.ndarray | None = None
    ) -> None:
        """Add (C, H, W) or (N, C, H, W) probabilities with their binary truth masks and, for a
        gated model, the (C,) or (N, C) presence probabilities (then for every image)."""
        if probabilities.ndim == 3:
            probabilities, truth = probabilities[None], truth[None]
            presence = None if presence is None else presence[None]
        if (presence is None) != (len(self._presence) == 0) and self._areas:
            raise ValueError("presence probabilities must come with every image or with none")
        if presence is not None:
            self._presence.append(np.asarray(presence, dtype=np.float64))
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
        """The rule per class that maximises its mean Dice, and that Dice.

        Ties go to the first candidate in (gate, min area, threshold) order: no gate before
        any gate, smaller areas and thresholds before larger ones.
        """
        if not self._areas:
            raise ValueError("no validation images were added")
        areas = np.concatenate(self._areas).astype(np.float64)  # (N, C, T)
        inter = np.concatenate(self._intersections).astype(np.float64)
        truth = np.concatenate(self._truth).astype(np.float64)[..., None]  # (N, C, 1)
        presence = np.concatenate(self._presence) if self._presence else None  # (N, C)
        gates = GATE_CANDIDATES if presence is not None else (None,)
        kept = pair_dice(inter, areas, np.broadcast_to(truth, areas.shape))
        dropped = (truth == 0).astype(np.float64)
        rules, scores = [], []
        for c in range(self.num_classes):
            grid = np.stack(
                [
                    np.stack(
                        [
                            np.where(
                                (areas[:, c] < m) | _gated(presence, c, gate),
                                dropped[:, c],
                                kept[:, c],
                            ).mean(axis=0)
                            for m in min_areas
                        ]
                    )
                    for gate in gates
                ]
            )  # (G, M, T)
            g_index, m_index, t_index = np.unravel_index(int(np.argmax(grid)), grid.shape)
            rules.append(
                ClassPostprocess(
                    class_id=c + 1,
                    threshold=self.thresholds[t_index],
                    min_area=min_areas[m_index],
                    gate=gates[g_index],
                )
            )
            scores.append(float(grid[g_index, m_index, t_index]))
        return rules, scores


def _gated(presence: np.ndarray | None, class_index: int, gate: float | None) -> np.ndarray:
    """(N, 1) True where the gate drops the class's pair (broadcast over thresholds)."""
    if presence is None or gate is None:
        return np.zeros((1, 1), dtype=bool)
    return (presence[:, class_index] < gate)[:, None]
