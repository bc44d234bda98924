"""Strip images and request helpers for the API tests."""

from __future__ import annotations

import io
import struct
import zlib

import httpx
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.tiny_models import HEIGHT, WIDTH

MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "BMP": "image/bmp", "TIFF": "image/tiff"}
RAW = "application/octet-stream"
# A bright block the probe model reports as class 1, aligned to JPEG's 8x8 blocks.
BLOCK = (slice(16, 32), slice(64, 96))  # rows, columns
BLOCK_BBOX = [64, 16, 95, 31]


def plain_strip(level: int = 100) -> np.ndarray:
    return np.full((HEIGHT, WIDTH), level, dtype=np.uint8)


def strip_with_block() -> np.ndarray:
    strip = plain_strip()
    strip[BLOCK] = 255
    return strip


def encode(pixels: np.ndarray, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    data = bytearray(encode(np.zeros((1, 1), dtype=np.uint8), "PNG"))
    ihdr = 8 + 4  # signature, then the IHDR chunk's length field
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 4 + 13]))
    data[ihdr + 4 + 13 : ihdr + 4 + 17] = struct.pack(">I", crc)
    return bytes(data)


def post_strip(
    client: TestClient, body: bytes, content_type: str | None, **params: str
) -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    params.setdefault("camera_id", "cam-1")
    return client.post("/v1/inspect", params=params, content=body, headers=headers)
