"""Grey strips to the network's input tensor, identically for training, export and serving."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.store.manifest import InputSpec, Normalisation

STRIDE = 32


def normalise(pixels: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """uint8 or [0, 1] float pixels -> normalised float32."""
    if pixels.dtype == np.uint8:
        pixels = pixels.astype(np.float32) / 255.0
    return ((pixels - normalisation.mean) / normalisation.std).astype(np.float32, copy=False)


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
        plane = normalise(image, spec.normalisation)
        if (target_h, target_w) != (height, width):
            plane = np.pad(plane, ((0, target_h - height), (0, target_w - width)), mode="reflect")
        batch[index] = plane
    return batch
