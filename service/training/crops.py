"""Training samples: random crops (half of them centred near a defect), flips and
brightness/contrast jitter, normalised exactly as the served model expects.

Where most images are defect-free (magnetic-tile: 71% of its training images), one crop per image
and epoch gives the defects a few percent of the pixels a net learns from. ``defect_share``
draws each epoch's samples so that at least that share come from images with a defect: every
such image once, the rest of the share drawn again from them, the remainder from a fresh random
subset of the clean images; the epoch keeps its length, so its cost does not change."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from service.data.base import SegmentationDataset
from service.inference.preprocess import STRIDE, normalise
from service.store.manifest import Normalisation


class TrainingCrops(Dataset):
    """Wraps a dataset; ``set_epoch`` reseeds so a resumed run sees the same crops."""

    def __init__(
        self,
        dataset: SegmentationDataset,
        crop: tuple[int, int],
        in_channels: int,
        normalisation: Normalisation,
        seed: int,
        defect_share: float = 0.0,
    ) -> None:
        if crop[0] % STRIDE or crop[1] % STRIDE:
            raise ValueError(f"crop {crop} must be a multiple of {STRIDE} in both directions")
        if not 0.0 <= defect_share < 1.0:
            raise ValueError(f"defect_share must be in [0, 1), got {defect_share}")
        self.dataset = dataset
        self.crop = crop
        self.in_channels = in_channels
        self.normalisation = normalisation
        self.seed = seed
        self.defect_share = defect_share
        self.rng = np.random.default_rng(seed)
        self._has_defect: np.ndarray | None = None
        self.order = np.arange(len(dataset))
        """The dataset index of each of the epoch's samples."""

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])
        self.order = self._epoch_order()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.dataset[int(self.order[index])]
        image, masks = pad_to_at_least(sample.image, sample.masks, self.crop)
        image, masks = self._random_crop(image, masks)
        if self.rng.random() < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        if self.rng.random() < 0.5:
            image, masks = image[::-1], masks[:, ::-1]
        pixels = self._jitter(image.astype(np.float32) / 255.0)
        planes = np.repeat(normalise(pixels, self.normalisation)[None], self.in_channels, axis=0)
        return torch.from_numpy(planes.copy()), torch.from_numpy(masks.astype(np.float32))

    def _epoch_order(self) -> np.ndarray:
        everything = np.arange(len(self.dataset))
        if self.defect_share == 0.0:
            return everything
        has_defect = self._defect_flags()
        defective, clean = np.flatnonzero(has_defect), np.flatnonzero(~has_defect)
        wanted = math.ceil(self.defect_share * everything.size)
        if defective.size >= wanted or not defective.size:
            return everything
        again = self.rng.choice(defective, wanted - defective.size)
        kept_clean = self.rng.choice(clean, everything.size - wanted, replace=False)
        return np.concatenate([defective, again, kept_clean])

    def _defect_flags(self) -> np.ndarray:
        """Whether each image holds any defect pixel (read once: every mask is decoded)."""
        if self._has_defect is None:
            self._has_defect = np.array(
                [bool(self.dataset[i].masks.any()) for i in range(len(self.dataset))]
            )
        return self._has_defect

    def _random_crop(self, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape
        crop_h, crop_w = self.crop
        defect_rows, defect_cols = np.nonzero(masks.any(axis=0))
        if defect_rows.size and self.rng.random() < 0.5:
            pick = self.rng.integers(defect_rows.size)
            top = _window_start(defect_rows[pick], crop_h, height, self.rng)
            left = _window_start(defect_cols[pick], crop_w, width, self.rng)
        else:
            top = int(self.rng.integers(height - crop_h + 1))
            left = int(self.rng.integers(width - crop_w + 1))
        return (
            image[top : top + crop_h, left : left + crop_w],
            masks[:, top : top + crop_h, left : left + crop_w],
        )

    def _jitter(self, pixels: np.ndarray) -> np.ndarray:
        contrast = self.rng.uniform(0.8, 1.2)
        brightness = self.rng.uniform(-0.1, 0.1)
        mean = float(pixels.mean())
        return np.clip((pixels - mean) * contrast + mean + brightness, 0.0, 1.0)


def pad_to_at_least(
    image: np.ndarray, masks: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad the image (zero-pad the masks) up to ``size`` where it is smaller."""
    pad_h = max(0, size[0] - image.shape[0])
    pad_w = max(0, size[1] - image.shape[1])
    if not (pad_h or pad_w):
        return image, masks
    image = np.pad(image, ((0, pad_h), (0, pad_w)), mode="reflect")
    masks = np.pad(masks, ((0, 0), (0, pad_h), (0, pad_w)))
    return image, masks


def _window_start(centre: int, window: int, extent: int, rng: np.random.Generator) -> int:
    """A window start that keeps ``centre`` inside the window and the window inside the image."""
    low = max(0, centre - window + 1)
    high = min(extent - window, centre)
    return int(rng.integers(low, high + 1))
