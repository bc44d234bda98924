"""Training samples: random crops (half of them centred near a defect), flips and
brightness/contrast jitter, normalised exactly as the served model expects."""

from __future__ import annotations

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
    ) -> None:
        if crop[0] % STRIDE or crop[1] % STRIDE:
            raise ValueError(f"crop {crop} must be a multiple of {STRIDE} in both directions")
        self.dataset = dataset
        self.crop = crop
        self.in_channels = in_channels
        self.normalisation = normalisation
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.dataset[index]
        image, masks = pad_to_at_least(sample.image, sample.masks, self.crop)
        image, masks = self._random_crop(image, masks)
        if self.rng.random() < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        if self.rng.random() < 0.5:
            image, masks = image[::-1], masks[:, ::-1]
        pixels = self._jitter(image.astype(np.float32) / 255.0)
        planes = np.repeat(normalise(pixels, self.normalisation)[None], self.in_channels, axis=0)
        return torch.from_numpy(planes.copy()), torch.from_numpy(masks.astype(np.float32))

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
