"""Request bodies to grey strips: decode, validate, refuse what cannot or should not be decoded.

Every refusal is an ``ImageRejected`` with a stable ``code``; the HTTP layer maps codes to
statuses. The header is checked (format, declared size, pixel mode) before any pixel is
decoded, so a small file that declares a huge image (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import io
import warnings
from typing import ClassVar

import numpy as np
from PIL import Image

RAW_MEDIA_TYPE = "application/octet-stream"
IMAGE_FORMATS: dict[str, str] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
MEDIA_TYPES: tuple[str, ...] = (*IMAGE_FORMATS, RAW_MEDIA_TYPE)

MAX_IMAGE_PIXELS = 16 * 1024 * 1024
"""Largest image any header may declare (40x a 256x1600 strip); Pillow's own limit is set to it
too, as a second line of defence."""
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Pillow only warns between MAX_IMAGE_PIXELS and twice that. Turned into an error once, for the
# whole process: warnings.catch_warnings() per call would race between request threads.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

# 8-bit modes that convert to grey without losing meaning; 16-bit and float images are refused.
EIGHT_BIT_MODES = frozenset(
    {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)


class ImageRejected(ValueError):
    """A body that is not a strip this model can inspect."""

    code: ClassVar[str] = "invalid_image"


class EmptyBody(ImageRejected):
    code = "empty_body"


class UndecodableImage(ImageRejected):
    code = "undecodable_image"


class UnsupportedMediaType(ImageRejected):
    code = "unsupported_media_type"


class UnsupportedPixelFormat(ImageRejected):
    code = "unsupported_pixel_format"


class WrongDimensions(ImageRejected):
    code = "wrong_dimensions"


class WrongBufferLength(ImageRejected):
    code = "wrong_buffer_length"


class ImageTooLarge(ImageRejected):
    code = "image_too_large"


def media_type(content_type: str | None) -> str:
    """``"Image/PNG; q=1"`` -> ``"image/png"``; missing -> ``""``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_strip(data: bytes, content_type: str, *, height: int, width: int) -> np.ndarray:
    """Decode a body of ``content_type`` into an (height, width) uint8 grey strip.

    Encoded images may be grey or colour (converted to grey the way training reads strips);
    ``application/octet-stream`` is raw 8-bit grey, row-major, exactly height*width bytes.
    """
    kind = media_type(content_type)
    if kind not in MEDIA_TYPES:
        supported = ", ".join(MEDIA_TYPES)
        raise UnsupportedMediaType(
            f"media type {kind or '(none)'!r} is not supported; send one of {supported}"
        )
    if not data:
        raise EmptyBody("the request body is empty; send one strip image")
    if kind == RAW_MEDIA_TYPE:
        if len(data) != height * width:
            raise WrongBufferLength(
                f"a raw strip must be exactly {height * width} bytes ({height} rows x {width} "
                f"columns, 8-bit grey), got {len(data)} bytes"
            )
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width)
    return _decode_encoded(data, IMAGE_FORMATS[kind], height=height, width=width)


def _decode_encoded(data: bytes, image_format: str, *, height: int, width: int) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data), formats=[image_format])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLarge(f"refused before decoding: {error}") from error
    except Exception as error:  # Pillow raises many types on malformed headers
        raise UndecodableImage(f"the body is not a readable {image_format} image") from error
    with image:
        _check_header(image, image_format, height=height, width=width)
        if image_format == "JPEG" and image.mode != "L":
            # libjpeg hands out the luma plane as grey, skipping the RGB detour: for the
            # Severstal originals (colour JPEGs of grey strips) the same pixels, faster.
            image.draft("L", image.size)
        try:
            image.load()
            grey = image.convert("L")
        except Exception as error:  # truncated or corrupt pixel data, in any codec
            raise UndecodableImage(
                f"the {image_format} image could not be decoded ({error})"
            ) from error
    return np.asarray(grey, dtype=np.uint8)


def _check_header(image: Image.Image, image_format: str, *, height: int, width: int) -> None:
    got_width, got_height = image.size
    if got_width * got_height > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(
            f"the {image_format} header declares {got_width}x{got_height} pixels, more than the "
            f"{MAX_IMAGE_PIXELS} allowed; refused before decoding"
        )
    if (got_height, got_width) != (height, width):
        raise WrongDimensions(
            f"expected a strip of {width}x{height} pixels (width x height), "
            f"got {got_width}x{got_height}"
        )
    if image.mode not in EIGHT_BIT_MODES:
        raise UnsupportedPixelFormat(
            f"pixel mode {image.mode!r} is not supported; send 8-bit grey or colour"
        )
