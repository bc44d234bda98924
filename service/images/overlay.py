"""The overlay picture of an inspection: the strip with each class's mask in its own colour,
and a legend beneath; without the strip, the masks on a neutral grey that says so."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service import rle

PALETTE = (
    (230, 25, 75),
    (255, 200, 0),
    (0, 170, 255),
    (190, 60, 255),
    (60, 200, 75),
    (255, 120, 40),
    (0, 210, 200),
    (240, 50, 230),
)
"""Colour of class k: PALETTE[(k - 1) % len(PALETTE)]."""
NEUTRAL = 150
LEGEND_HEIGHT = 28
ALPHA = 0.55
MISSING_NOTE = "strip image not kept: masks drawn on a neutral background"


def class_colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[(class_id - 1) % len(PALETTE)]


def render_overlay(
    strip: np.ndarray | None,
    shape: tuple[int, int],
    masks: Mapping[int, str],
    classes: Mapping[int, str],
) -> bytes:
    """PNG bytes. ``masks``: class id -> RLE; ``classes``: id -> name of every class to list."""
    height, width = shape
    grey = np.full(shape, NEUTRAL, np.uint8) if strip is None else strip
    picture = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32)
    for class_id, encoded in masks.items():
        mask = rle.decode(encoded, shape).astype(bool)
        picture[mask] = (1 - ALPHA) * picture[mask] + ALPHA * np.array(class_colour(class_id))
    canvas = Image.new("RGB", (width, height + LEGEND_HEIGHT), (255, 255, 255))
    canvas.paste(Image.fromarray(picture.round().astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    if strip is None:
        draw.rectangle((4, 4, 12 + draw.textlength(MISSING_NOTE, font=font), 24), fill=(40, 40, 40))
        draw.text((8, 6), MISSING_NOTE, fill=(255, 255, 255), font=font)
    x = 8
    for class_id in sorted({*classes, *masks}):
        name = classes.get(class_id, f"class {class_id}")
        found = "" if class_id in masks else " (none)"
        label = f"{class_id} {name}{found}"
        top = height + 7
        draw.rectangle((x, top, x + 14, top + 14), fill=class_colour(class_id), outline=(0, 0, 0))
        draw.text((x + 20, top), label, fill=(0, 0, 0), font=font)
        x += 40 + int(draw.textlength(label, font=font))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG", optimize=False, compress_level=3)
    return buffer.getvalue()
