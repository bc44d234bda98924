"""What the serving benchmarks post: which strips, in which body, and the options that choose them.

Every client posts the strips in turn, from its own place in the list, as a camera sends a
stream of different frames: what a strip costs after the session run (post-processing,
recording, the response) depends on its masks.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from service.data.synthetic import HEIGHT as SYNTHETIC_HEIGHT
from service.data.synthetic import WIDTH as SYNTHETIC_WIDTH
from service.data.synthetic import render_strip
from service.inference.decode import RAW_MEDIA_TYPE

BODIES = {
    "png": "a grey PNG, as gateways usually send",
    "jpeg": "a grey JPEG (quality 95), the format of the Severstal originals",
    "raw": "the raw 8-bit buffer as application/octet-stream (no decoding)",
}
JPEG_QUALITY = 95
STRIP_SOURCES = {
    "real": "the Severstal sample strips in ../shared/data",
    "synthetic": "the strips of the generator the shipped model was trained on",
}
SYNTHETIC_STRIPS = 20


@dataclass(frozen=True)
class Body:
    """The request bodies to post in turn, and their content type."""

    kind: str
    data: list[bytes]


def add_strip_options(parser: argparse.ArgumentParser, *, body: str) -> None:
    """``--body`` (default ``body``) and ``--strips``, their choices and help from the tables."""
    parser.add_argument("--body", default=body, choices=BODIES, help=_choices_help(BODIES))
    parser.add_argument(
        "--strips", default="real", choices=STRIP_SOURCES, help=_choices_help(STRIP_SOURCES)
    )


def _choices_help(table: dict[str, str]) -> str:
    return "; ".join(f"{name}: {meaning}" for name, meaning in table.items())


def load_strips(
    data_root: Path, shape: tuple[int, int], source: str
) -> tuple[list[np.ndarray], str]:
    """The strips to post and a line saying what they are.

    ``real``: the Severstal sample strips of the model's shape, else (../shared/data missing)
    one strip of deterministic noise, and the line says so. ``synthetic``: the generator's
    first ``SYNTHETIC_STRIPS`` seeds (it draws 256x1600 strips only).
    """
    if source == "synthetic":
        if shape != (SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH):
            raise ValueError(
                f"synthetic strips are {SYNTHETIC_HEIGHT}x{SYNTHETIC_WIDTH}; the model takes "
                f"{shape[0]}x{shape[1]}"
            )
        strips = [render_strip(np.random.default_rng(seed))[0] for seed in range(SYNTHETIC_STRIPS)]
        return strips, f"synthetic: seeds 0..{SYNTHETIC_STRIPS - 1} in turn"
    if source != "real":
        raise ValueError(f"strip source {source!r}: choose one of {', '.join(STRIP_SOURCES)}")
    images = data_root / "severstal-samples" / "images"
    strips = []
    for path in sorted(images.glob("*.png")) if images.is_dir() else []:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
        if grey.shape == shape:
            strips.append(grey)
    if strips:
        return strips, f"real: {len(strips)} Severstal strips from {images} in turn"
    noise = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return [noise], f"noise: no {shape[0]}x{shape[1]} Severstal strips under {images}"


def encode_body(strips: Sequence[np.ndarray], body_format: str) -> Body:
    """The strips as request bodies of ``body_format`` (a key of ``BODIES``)."""
    if body_format == "raw":
        return Body(RAW_MEDIA_TYPE, [strip.tobytes() for strip in strips])
    if body_format not in BODIES:
        raise ValueError(f"body format {body_format!r}: choose one of {', '.join(BODIES)}")
    return Body(f"image/{body_format}", [_encoded(strip, body_format) for strip in strips])


def _encoded(strip: np.ndarray, body_format: str) -> bytes:
    buffer = io.BytesIO()
    if body_format == "jpeg":
        Image.fromarray(strip).save(buffer, "JPEG", quality=JPEG_QUALITY)
    else:
        Image.fromarray(strip).save(buffer, "PNG")
    return buffer.getvalue()
