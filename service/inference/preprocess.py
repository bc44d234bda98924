"""Grey strips to the network's input tensor, identically for training, export and serving."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from service.store.manifest import InputSpec, Normalisation

STRIDE = 32


def normalise(pixels: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """uint8 or [0, 1] float pixels -> normalised float32."""
    if pixels.dtype == np.uint8:
        pixels = pixels.astype(np.float32) / 255.0
    return ((pixels - normalisation.mean) / normalisation.std).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def _grey_levels(mean: float, std: float) -> np.ndarray:
    """``normalise`` of every uint8 level: looking pixels up in it gives exactly the values
    ``normalise`` computes (it is elementwise), in one pass instead of five: 0.5 against 3 ms
    for a 256x1600 strip."""
    return normalise(np.arange(256, dtype=np.uint8), Normalisation(mean=mean, std=std))


def _normalise_into(out: np.ndarray, image: np.ndarray, normalisation: Normalisation) -> None:
    """``out[...] = normalise(image)`` for a (H, W) ``out`` view."""
    if image.dtype == np.uint8 and out.flags.c_contiguous:
        levels = _grey_levels(normalisation.mean, normalisation.std)
        np.take(levels, image, out=out, mode="wrap")  # uint8 indices are always in range
    else:
        out[...] = normalise(image, normalisation)


def padded_size(height: int, width: int, stride: int = STRIDE) -> tuple[int, int]:
    return -(-height // stride) * stride, -(-width // stride) * stride


def prepare_batch(images: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Grey (H, W) uint8 images of one size -> (N, channels, H', W') float32.

    H' and W' are rounded up to a multiple of 32 by reflection so that any strip size reaches
    the network; callers crop the output back with ``[..., :H, :W]``.
    """
    if not images:
        raise ValueError("empty batch")
    height, width = images[0].shape
    target_h, target_w = padded_size(height, width)
    batch = np.empty((len(images), spec.channels, target_h, target_w), dtype=np.float32)
    for index, image in enumerate(images):
        if image.shape != (height, width):
            raise ValueError(f"images in a batch differ in size: {image.shape} vs {height, width}")
        if (target_h, target_w) == (height, width):
            _normalise_into(batch[index, 0], image, spec.normalisation)
            batch[index, 1:] = batch[index, 0]
            continue
        plane = normalise(image, spec.normalisation)
        batch[index] = np.pad(plane, ((0, target_h - height), (0, target_w - width)), "reflect")
    return batch
