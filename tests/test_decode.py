"""Decoding bodies: a colour JPEG goes straight to its luma plane (Pillow's draft mode) and gives
the pixels of the full decode converted to grey."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.inference.decode import decode_strip


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _full_decode_to_grey(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image.convert("L"))


@pytest.mark.needs_shared
def test_colour_jpegs_of_real_strips_decode_to_the_same_grey(shared_data: Path) -> None:
    images = sorted((shared_data / "severstal-samples" / "images").glob("*.png"))
    if not images:
        pytest.skip("no Severstal sample strips in ../shared/data")
    for path in images[:5]:
        with Image.open(path) as strip:
            data = _jpeg(np.asarray(strip.convert("RGB")))
        decoded = decode_strip(data, "image/jpeg", height=256, width=1600)
        np.testing.assert_array_equal(decoded, _full_decode_to_grey(data))


def test_a_colourful_jpeg_decodes_to_its_luma() -> None:
    """Saturated colours differ where the full decode clips R, G or B before taking the luma;
    nearly every pixel is the same within rounding."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(256 // 16, 1600 // 16, 3), dtype=np.uint8)
    data = _jpeg(np.kron(colours, np.ones((16, 16, 1), dtype=np.uint8)))
    decoded = decode_strip(data, "image/jpeg", height=256, width=1600)
    assert decoded.dtype == np.uint8 and decoded.shape == (256, 1600)
    difference = np.abs(decoded.astype(int) - _full_decode_to_grey(data).astype(int))
    assert np.percentile(difference, 99) <= 2 and difference.mean() < 0.5


def test_a_grey_jpeg_is_decoded_as_it_is() -> None:
    pixels = np.tile(np.arange(1600, dtype=np.uint16) % 256, (256, 1)).astype(np.uint8)
    data = _jpeg(pixels)
    np.testing.assert_array_equal(
        decode_strip(data, "image/jpeg", height=256, width=1600), _full_decode_to_grey(data)
    )
