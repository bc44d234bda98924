"""A model version on the real Severstal strips: false alarms, defects found, Dice, margins.

The strips (``../shared/data/severstal-samples``) are for measurement only: nothing trains,
tunes or selects on them. Every strip says which of the four classes it holds
(``image_labels_20.csv``), so every (strip, class) pair is known to be clean or defective; 14
strips also have complete masks (``gt_status.csv``: ``full_rle`` or ``defect_free``, masks in
``gt_train.csv``) and are scored with the competition Dice beside the Dice of predicting nothing.

Off-steel margins are found on the strip itself: the near-black stretches that reach the
frame's left or right end, where the frame runs past the steel.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from service import rle
from service.data.severstal import read_train_csv
from service.evaluation.metrics import pair_dice

NUM_CLASSES = 4
OFF_STEEL_LEVEL = 20
"""A pixel whose neighbourhood mean is at most this is dark enough to be off steel."""
OFF_STEEL_WINDOW = 5
"""Side of the square neighbourhood the darkness is averaged over."""
COMPLETE = ("full_rle", "defect_free")

Segment = Callable[[bytes, str], Mapping[str, Mapping[int, np.ndarray]]]
"""(PNG bytes, content type) -> for each way of post-processing (as served, gate open, ...),
the masks of the classes found, by class id."""


@dataclass(frozen=True)
class RealStrip:
    image_id: str
    path: Path
    labels: frozenset[int]
    """The classes the strip holds."""
    masks: np.ndarray | None
    """(4, H, W) complete ground truth, or None where it is not known."""


@dataclass(frozen=True)
class StripOutcome:
    strip: RealStrip
    found: Mapping[int, np.ndarray]
    off_steel: np.ndarray


def load_real_strips(root: Path) -> list[RealStrip]:
    """The labelled strips under ``root``, ordered by id; a clear error when the set is absent."""
    labels_file = root / "image_labels_20.csv"
    if not labels_file.is_file():
        raise FileNotFoundError(
            f"no real Severstal strips at {root} (expected image_labels_20.csv and images/): "
            "they come with ../shared/data/severstal-samples"
        )
    images = {path.stem: path for path in (root / "images").glob("*.png")}
    statuses = _read_column(root / "gt_status.csv", "gt_status")
    truth = read_train_csv(root / "gt_train.csv")
    strips = []
    for image_id, row in sorted(_read_rows(labels_file).items()):
        stem = Path(image_id).stem
        if stem not in images:
            raise FileNotFoundError(f"{root}/images has no {stem}.png for {image_id}")
        labels = frozenset(k for k in range(1, NUM_CLASSES + 1) if row[f"has_c{k}"] == "1")
        complete = statuses.get(image_id) in COMPLETE
        masks = _truth_masks(truth.get(image_id, {})) if complete else None
        strips.append(RealStrip(image_id, images[stem], labels, masks))
    return strips


def off_steel_mask(strip: np.ndarray) -> np.ndarray:
    """(H, W) bool: the dark stretches of each row that reach the frame's left or right end."""
    dark = _box_mean(strip.astype(np.float32), OFF_STEEL_WINDOW) <= OFF_STEEL_LEVEL
    from_left = np.logical_and.accumulate(dark, axis=1)
    from_right = np.logical_and.accumulate(dark[:, ::-1], axis=1)[:, ::-1]
    return from_left | from_right


def run_strips(strips: Sequence[RealStrip], segment: Segment) -> dict[str, list[StripOutcome]]:
    """Each strip segmented once; its outcomes by way of post-processing."""
    outcomes: dict[str, list[StripOutcome]] = {}
    for strip in strips:
        data = strip.path.read_bytes()
        with Image.open(strip.path) as image:
            off_steel = off_steel_mask(np.asarray(image.convert("L")))
        for mode, found in segment(data, "image/png").items():
            outcomes.setdefault(mode, []).append(StripOutcome(strip, found, off_steel))
    return outcomes


def real_strip_report(outcomes: Sequence[StripOutcome]) -> dict[str, object]:
    """The figures: clean pairs flagged, defect pairs found, Dice on the complete strips against
    predicting nothing, and the share of flagged pixels that lie off steel."""
    clean_flagged = defect_found = clean_pairs = defect_pairs = 0
    flagged_pixels = off_steel_pixels = 0
    dice, empty_dice = [], []
    per_strip = []
    for outcome in outcomes:
        labels, found = outcome.strip.labels, outcome.found
        clean_pairs += NUM_CLASSES - len(labels)
        defect_pairs += len(labels)
        clean_flagged += len(set(found) - labels)
        defect_found += len(set(found) & labels)
        for mask in found.values():
            flagged_pixels += int(mask.sum())
            off_steel_pixels += int((mask.astype(bool) & outcome.off_steel).sum())
        if outcome.strip.masks is not None:
            predicted = _stack(found, outcome.strip.masks.shape)
            dice.extend(_pair_dices(predicted, outcome.strip.masks))
            empty_dice.extend(_pair_dices(np.zeros_like(predicted), outcome.strip.masks))
        per_strip.append(
            {
                "image_id": outcome.strip.image_id,
                "labels": sorted(labels),
                "found": {str(k): int(m.sum()) for k, m in sorted(found.items())},
                "off_steel_px": int(outcome.off_steel.sum()),
            }
        )
    return {
        "strips": len(outcomes),
        "clean_pairs": clean_pairs,
        "clean_pairs_flagged": clean_flagged,
        "defect_pairs": defect_pairs,
        "defect_pairs_found": defect_found,
        "complete_strips": len(dice) // NUM_CLASSES,
        "dice": float(np.mean(dice)) if dice else None,
        "dice_empty_prediction": float(np.mean(empty_dice)) if empty_dice else None,
        "flagged_px": flagged_pixels,
        "off_steel_flagged_px": off_steel_pixels,
        "off_steel_share": off_steel_pixels / flagged_pixels if flagged_pixels else 0.0,
        "per_strip": per_strip,
    }


def _pair_dices(predicted: np.ndarray, truth: np.ndarray) -> list[float]:
    p, t = predicted.astype(bool), truth.astype(bool)
    inter = (p & t).sum(axis=(1, 2)).astype(np.float64)
    scores = pair_dice(inter, p.sum(axis=(1, 2)).astype(np.float64), t.sum(axis=(1, 2)))
    return [float(s) for s in scores]


def _stack(found: Mapping[int, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    masks = np.zeros(shape, dtype=np.uint8)
    for class_id, mask in found.items():
        masks[class_id - 1] = mask
    return masks


def _truth_masks(encoded: Mapping[int, str]) -> np.ndarray:
    masks = np.zeros((NUM_CLASSES, *rle.SEVERSTAL_SHAPE), dtype=np.uint8)
    for class_id, pixels in encoded.items():
        masks[class_id - 1] = rle.decode(pixels)
    return masks


def _box_mean(image: np.ndarray, window: int) -> np.ndarray:
    """Mean over a ``window`` x ``window`` square around each pixel (edges replicated)."""
    pad = window // 2
    padded = np.pad(image, pad, mode="edge")
    sums = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = image.shape
    total = (
        sums[window : window + h, window : window + w]
        - sums[:h, window : window + w]
        - sums[window : window + h, :w]
        + sums[:h, :w]
    )
    return total / (window * window)


def _read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["ImageId"]: row for row in csv.DictReader(handle)}


def _read_column(path: Path, column: str) -> dict[str, str]:
    return {image_id: row[column] for image_id, row in _read_rows(path).items()}
