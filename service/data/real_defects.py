"""Real defect appearance for synthetic strips: the defects of NEU-Seg's training images.

Drawn defects teach a net what the generator draws; real steel's pits, scratches and scale
look otherwise (soft-edged, uneven inside, with the steel's own texture running through them),
and a net that has only seen drawn ones finds few of them and outlines those coarsely.
NEU-Seg is real hot-rolled steel with pixel masks of three classes that match three of the
strip classes in look: its inclusions (small dark elongated spots) are pits, its scratches
are scratches, its patches (large dark irregular areas) are rolled-in scale. Edge cracks have
no counterpart there and stay drawn. Only the training split is read, so NEU-Seg's validation
and test images stay unseen.

A defect is kept as what it changes: its image minus the steel around it (the image with the
defect filled by the median of the clean pixels, then blurred wide), on the mask's pixels only,
cropped to the mask's bounding box. A strip receives it scaled, flipped, possibly transposed
and with its contrast varied, so that the mask is exactly the set of pixels it alters, as for
a drawn defect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from service.data.neu import NeuSegDataset

NEU_TO_STRIP_CLASS = {1: 1, 2: 4, 3: 3}
"""NEU-Seg class id -> strip class id: inclusion -> pits, patches -> rolled-in scale,
scratches -> scratch."""
PER_CLASS = 1000
"""At most this many defects of one class in the bank (in the split's order)."""
MIN_PIXELS = 30
"""A NEU mask with fewer pixels than this is too small to carry a look."""
BACKGROUND_BLUR = 12.0
"""Radius of the blur that turns the defect-filled image into the steel around the defect."""
SCALE = (0.6, 1.6)
"""Range of the factor a defect is resized by on a strip."""
CONTRAST = (0.6, 1.2)
"""Range of the factor on a defect's own contrast."""


@dataclass(frozen=True)
class RealDefects:
    """Per strip class, the real defects: float32 intensity changes, zero off the defect."""

    deltas: dict[int, list[np.ndarray]]

    @classmethod
    def from_neu(cls, root: Path, per_class: int = PER_CLASS) -> RealDefects:
        """The defects of NEU-Seg's training split under ``root``, at most ``per_class`` of
        each class, in a fixed order (the same folder gives the same bank)."""
        dataset = NeuSegDataset(root, "train")
        deltas: dict[int, list[np.ndarray]] = {strip: [] for strip in NEU_TO_STRIP_CLASS.values()}
        for index in range(len(dataset)):
            sample = dataset[index]
            for neu_class, strip_class in NEU_TO_STRIP_CLASS.items():
                mask = sample.masks[neu_class - 1].astype(bool)
                if len(deltas[strip_class]) < per_class and mask.sum() >= MIN_PIXELS:
                    deltas[strip_class].append(defect_delta(sample.image, mask))
        if not any(deltas.values()):
            raise ValueError(f"NEU-Seg under {root}: no defect of {MIN_PIXELS}+ pixels found")
        return cls({strip: found for strip, found in deltas.items() if found})

    def __len__(self) -> int:
        return sum(len(found) for found in self.deltas.values())

    def has(self, class_id: int) -> bool:
        return class_id in self.deltas

    def draw(self, rng: np.random.Generator, class_id: int, height: int, width: int) -> np.ndarray:
        """One defect of ``class_id`` as it goes on a ``height`` x ``width`` strip: resized,
        flipped, transposed half of the time, its contrast varied, nonzero exactly on its
        footprint and by at least one grey level there (so the footprint survives rounding)."""
        found = self.deltas[class_id]
        delta = found[int(rng.integers(len(found)))]
        if rng.random() < 0.5:
            delta = delta.T
        if rng.random() < 0.5:
            delta = delta[:, ::-1]
        if rng.random() < 0.5:
            delta = delta[::-1]
        fit = min(height / delta.shape[0], width / delta.shape[1])
        scale = min(rng.uniform(*SCALE), fit)
        size = (max(1, round(delta.shape[1] * scale)), max(1, round(delta.shape[0] * scale)))
        footprint = _resized(delta != 0, size) > 0.5
        resized = _resized(delta, size) * rng.uniform(*CONTRAST)
        nudged = np.where(np.abs(resized) >= 1.0, resized, np.where(resized > 0, 1.0, -1.0))
        return np.where(footprint, nudged, 0.0).astype(np.float32)


def defect_delta(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What the defect under ``mask`` changes in ``image``, cropped to the mask's bounding box:
    the image minus the steel around it, zero off the mask."""
    filled = np.where(mask, np.uint8(np.median(image[~mask])), image).astype(np.uint8)
    around = Image.fromarray(filled).filter(ImageFilter.GaussianBlur(BACKGROUND_BLUR))
    pixels = image.astype(np.float32)
    delta = np.where(mask, pixels - np.asarray(around, dtype=np.float32), 0.0).astype(np.float32)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = delta[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # A mask pixel the defect left at the steel's level still belongs to it.
    on_mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.where(on_mask & (crop == 0), np.float32(-1.0), crop)


def _resized(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``values`` (bool or float) resized bilinearly to ``size`` (width, height), as float32."""
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))
