"""Grey strips to the network's input tensor, identically for training, export and serving."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.store.manifest import InputSpec, Normalisation

STRIDE = 32


def normalise(pixels: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """uint8 or [0, 1] float pixels -> normalised float32."""
    out = np.empty(pixels.shape, dtype=np.float32)
    _normalise_into(out, pixels, normalisation)
    return out


def _normalise_into(out: np.ndarray, pixels: np.ndarray, normalisation: Normalisation) -> None:
    """``out[...] = (pixels / 255 - mean) / std`` (uint8) or ``(pixels - mean) / std`` (float),
    every step in float32, written into ``out`` without temporaries.

    Three in-place passes are faster than looking every pixel up in a table of the 256 levels
    (``np.take`` widens each uint8 index to intp first).
    """
    if pixels.dtype == np.uint8:
        np.divide(pixels, np.float32(255.0), out=out, dtype=np.float32)
    else:
        out[...] = pixels
    np.subtract(out, np.float32(normalisation.mean), out=out)
    np.divide(out, np.float32(normalisation.std), out=out)


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
