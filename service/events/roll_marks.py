"""Repeating defects along a coil: a damaged roll marks the strip once every turn, so defects of
one class recur at a constant pitch (the roll's circumference). Reported as suspected roll marks
with the pitch in metres."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_OCCURRENCES = 3
DEFAULT_TOLERANCE_M = 0.05
MIN_PITCH_M = 0.2
"""Closer than this, recurring defects are one long defect over neighbouring strips, not a roll."""


@dataclass(frozen=True)
class RollMark:
    class_id: int
    pitch_m: float
    positions_m: tuple[float, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "class_id": self.class_id,
            "pitch_m": round(self.pitch_m, 4),
            "occurrences": len(self.positions_m),
            "positions_m": [round(p, 4) for p in self.positions_m],
        }


def find_roll_marks(
    defects: Iterable[tuple[int, float]],
    *,
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    min_occurrences: int = MIN_OCCURRENCES,
    min_pitch_m: float = MIN_PITCH_M,
) -> list[RollMark]:
    """Chains of at least ``min_occurrences`` defects of one class, each the previous plus one
    pitch (within ``tolerance_m``), from ``(class_id, position_m)`` pairs; longest first. A
    defect belongs to one chain at most."""
    by_class: dict[int, list[float]] = defaultdict(list)
    for class_id, position in defects:
        by_class[class_id].append(float(position))
    marks = []
    for class_id, positions in sorted(by_class.items()):
        marks += _class_marks(
            class_id, sorted(positions), tolerance_m, min_occurrences, min_pitch_m
        )
    return sorted(marks, key=lambda mark: (-len(mark.positions_m), mark.class_id, mark.pitch_m))


def _class_marks(
    class_id: int,
    positions: list[float],
    tolerance_m: float,
    min_occurrences: int,
    min_pitch_m: float,
) -> list[RollMark]:
    marks = []
    remaining = positions
    while len(remaining) >= min_occurrences:
        chain = _longest_chain(remaining, tolerance_m, min_pitch_m)
        if len(chain) < min_occurrences:
            break
        marks.append(RollMark(class_id, _fitted_pitch(chain), tuple(chain)))
        taken = set(chain)
        remaining = [p for p in remaining if p not in taken]
    return marks


def _longest_chain(positions: list[float], tolerance_m: float, min_pitch_m: float) -> list[float]:
    """The longest run p, p + d, p + 2d, ... over every start and every pitch d that two of the
    positions define."""
    best: list[float] = []
    for i, start in enumerate(positions):
        for following in positions[i + 1 :]:
            pitch = following - start
            if pitch < min_pitch_m:
                continue
            chain = _chain(positions, start, pitch, tolerance_m)
            if len(chain) > len(best):
                best = chain
    return best


def _chain(positions: list[float], start: float, pitch: float, tolerance_m: float) -> list[float]:
    chain = [start]
    while True:
        expected = chain[-1] + pitch
        found = _nearest(positions, expected)
        if found is None or abs(found - expected) > tolerance_m:
            return chain
        chain.append(found)


def _nearest(positions: list[float], value: float) -> float | None:
    index = bisect.bisect_left(positions, value)
    candidates = positions[max(0, index - 1) : index + 1]
    return min(candidates, key=lambda p: abs(p - value)) if candidates else None


def _fitted_pitch(chain: list[float]) -> float:
    """The least-squares slope of position against turn number."""
    turns = np.arange(len(chain), dtype=float)
    return float(np.polyfit(turns, np.asarray(chain), 1)[0])
