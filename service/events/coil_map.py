"""The map of a coil: its length left to right, its width top to bottom, each defect a mark in
its class colour where it was found, suspected roll marks flagged along the top.

A line-scan frame's columns run across the strip and its rows along it, so a defect sits across
the strip at its bounding box's columns and along the coil at its strip's ``position_m``. Without
positions the strips are laid out in the order they were captured, one slot each.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from service.events.roll_marks import RollMark
from service.images.overlay import class_colour

SIZE = (1200, 380)
LEFT, RIGHT, TOP, BOTTOM = 60, 30, 60, 80
BAND = (235, 235, 235)
INK = (40, 40, 40)
MARK_WIDTH = 4
ROLL_MARK = (200, 0, 0)


@dataclass(frozen=True)
class MappedDefect:
    class_id: int
    across: tuple[float, float]
    """The defect's extent across the strip, as fractions of the frame's width (0 = left)."""


@dataclass(frozen=True)
class MappedStrip:
    along: float
    """Metres from the coil's head, or the strip's slot when positions are missing."""
    defects: Sequence[MappedDefect]


def render_coil_map(
    coil_id: str,
    strips: Sequence[MappedStrip],
    classes: Mapping[int, str],
    *,
    in_metres: bool,
    roll_marks: Sequence[RollMark] = (),
) -> bytes:
    """PNG bytes of the map; ``classes`` (id -> name) are the legend's entries."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    right, bottom = SIZE[0] - RIGHT, SIZE[1] - BOTTOM
    start = min((s.along for s in strips), default=0.0)
    end = max((s.along for s in strips), default=1.0)
    span = max(end - start, 1.0)
    low, high = start - 0.02 * span, end + 0.02 * span

    def x_of(along: float) -> float:
        return LEFT + (along - low) / (high - low) * (right - LEFT)

    draw.rectangle([LEFT, TOP, right, bottom], fill=BAND, outline=INK)
    _scale(draw, font, low, high, x_of, bottom, in_metres)
    for strip in strips:
        x = x_of(strip.along)
        for defect in strip.defects:
            top = TOP + defect.across[0] * (bottom - TOP)
            lower = max(top + 2, TOP + defect.across[1] * (bottom - TOP))
            draw.rectangle(
                [x - MARK_WIDTH / 2, top, x + MARK_WIDTH / 2, lower],
                fill=class_colour(defect.class_id),
            )
    for mark in roll_marks:
        for position in mark.positions_m:
            x = x_of(position)
            draw.polygon([(x - 5, TOP - 10), (x + 5, TOP - 10), (x, TOP - 2)], fill=ROLL_MARK)
    title = f"coil {coil_id}: {len(strips)} strips"
    if roll_marks:
        pitches = ", ".join(f"{m.pitch_m:.2f} m" for m in roll_marks)
        title += f"; suspected roll marks every {pitches}"
    draw.text((LEFT, 14), title, fill=INK, font=font)
    draw.text((LEFT - 50, TOP), "edge", fill=INK, font=font)
    draw.text((LEFT - 50, bottom - 10), "edge", fill=INK, font=font)
    _legend(draw, font, classes, SIZE[1] - 28)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _scale(draw, font, low: float, high: float, x_of, bottom: float, in_metres: bool) -> None:
    """Ticks at a round step along the coil, labelled in metres (or strip slots)."""
    step = _round_step((high - low) / 8)
    tick = math.ceil(low / step) * step
    while tick <= high:
        x = x_of(tick)
        draw.line([x, bottom, x, bottom + 6], fill=INK)
        draw.text((x - 10, bottom + 9), f"{tick:g}", fill=INK, font=font)
        tick += step
    label = "metres from the coil's head" if in_metres else "strip, in order of capture"
    draw.text((SIZE[0] // 2 - 80, bottom + 26), label, fill=INK, font=font)


def _round_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _legend(draw, font, classes: Mapping[int, str], y: float) -> None:
    x = LEFT
    for class_id, name in sorted(classes.items()):
        draw.rectangle([x, y, x + 14, y + 14], fill=class_colour(class_id), outline=INK)
        draw.text((x + 20, y + 2), f"{class_id} {name}", fill=INK, font=font)
        x += 40 + 7 * len(name)
