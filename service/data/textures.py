"""Real steel texture for synthetic strips: defect-free windows of NEU-Seg's training images.

A net trained on procedural backgrounds alone learns that any strong structure on steel is a
defect, and real clean steel is full of it (mottling, stains, rough patches, streaks). NEU-Seg
is real hot-rolled steel with pixel masks, and 88% of its pixels are clean: windows that lie
wholly on clean pixels (with a margin) give texture that is real and certainly clean. Only the
training split is read, so NEU-Seg's validation and test images stay unseen.

A strip's texture is a quilt of such windows, each scaled, stretched along the rolling
direction and flipped at random, blended with sine windows at half-overlap (the squares of
overlapping windows sum to one, so the texture keeps its contrast and shows no seams).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from service.data.neu import NeuSegDataset

PATCH = 64
"""Side of a texture window, in NEU pixels."""
STRIDE = 32
DEFECT_MARGIN = 9
"""Side of the max filter that grows every defect before windows are cut: its blurred rim is
not clean steel."""
PER_IMAGE = 1
"""At most this many windows from one image, so that the bank spans the whole split."""
DARK_TAIL = 4.0
"""A window whose darkest percent lies more than this many robust deviations under its median
holds a dark spot the masks missed (an unlabelled inclusion, say): it is left out."""


@dataclass(frozen=True)
class SteelTextures:
    """Mean-free clean windows of real steel, (count, PATCH, PATCH) float32 grey levels."""

    patches: np.ndarray

    @classmethod
    def from_neu(cls, root: Path, limit: int = 4000) -> SteelTextures:
        """Up to ``limit`` windows from NEU-Seg's training split under ``root``, in a fixed
        order (the same folder gives the same bank)."""
        dataset = NeuSegDataset(root, "train")
        patches: list[np.ndarray] = []
        for index in range(len(dataset)):
            sample = dataset[index]
            windows = clean_windows(sample.image, sample.masks.any(axis=0))
            patches.extend(islice(windows, PER_IMAGE))
            if len(patches) >= limit:
                break
        if not patches:
            raise ValueError(f"NEU-Seg under {root}: no defect-free {PATCH}x{PATCH} window found")
        stack = np.stack(patches[:limit]).astype(np.float32)
        return cls(stack - stack.mean(axis=(1, 2), keepdims=True))

    def __len__(self) -> int:
        return len(self.patches)

    def draw(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A (height, width) mean-free texture quilted from the bank's windows."""
        scale = rng.uniform(1.0, 3.0)
        stretch = rng.uniform(1.0, 2.5)
        tile = (_even(PATCH * scale), _even(PATCH * scale * stretch))
        if rng.random() < 0.5:  # the rolling direction runs along the frame's y
            tile = tile[::-1]
        hop = (tile[0] // 2, tile[1] // 2)
        window = np.outer(_sine_window(tile[0]), _sine_window(tile[1])).astype(np.float32)
        canvas = np.zeros((height + 2 * tile[0], width + 2 * tile[1]), dtype=np.float32)
        for top in range(0, canvas.shape[0] - tile[0] + 1, hop[0]):
            for left in range(0, canvas.shape[1] - tile[1] + 1, hop[1]):
                canvas[top : top + tile[0], left : left + tile[1]] += window * self._tile(rng, tile)
        top = tile[0] - int(rng.integers(0, hop[0]))
        left = tile[1] - int(rng.integers(0, hop[1]))
        return canvas[top : top + height, left : left + width]

    def _tile(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        patch = self.patches[int(rng.integers(len(self.patches)))]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[::-1]
        resized = Image.fromarray(np.ascontiguousarray(patch)).resize(
            (shape[1], shape[0]), Image.Resampling.BILINEAR
        )
        return np.asarray(resized)


def clean_windows(image: np.ndarray, defect: np.ndarray) -> Iterator[np.ndarray]:
    """The PATCH x PATCH windows of ``image`` (on a STRIDE grid, row by row) with no pixel of
    ``defect`` grown by DEFECT_MARGIN, each scored only when asked for."""
    grown = Image.fromarray(defect.astype(np.uint8) * 255).filter(
        ImageFilter.MaxFilter(DEFECT_MARGIN)
    )
    blocked = np.asarray(grown) > 0
    for top in range(0, image.shape[0] - PATCH + 1, STRIDE):
        for left in range(0, image.shape[1] - PATCH + 1, STRIDE):
            window = image[top : top + PATCH, left : left + PATCH]
            if not blocked[top : top + PATCH, left : left + PATCH].any() and _no_dark_spot(window):
                yield window


def _no_dark_spot(window: np.ndarray) -> bool:
    median = float(np.median(window))
    deviation = 1.4826 * float(np.median(np.abs(window - median))) + 1e-3
    return (median - float(np.percentile(window, 1))) / deviation <= DARK_TAIL


def _sine_window(length: int) -> np.ndarray:
    """sin(pi (n + 1/2) / length): at half-overlap the squares of neighbours sum to one."""
    return np.sin(np.pi * (np.arange(length) + 0.5) / length)


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))
