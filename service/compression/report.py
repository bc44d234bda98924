"""The job's report: a JSON summary and a PNG of validation Dice against MACs over the steps.

Drawn with Pillow, which the service already depends on, rather than adding matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from service.compression.config import CompressionConfig
from service.compression.state import write_json
from service.store import Manifest

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"

SIZE = (720, 460)
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 60, 40, 60
TICKS = 5
INK, GRID, LINE, KEPT, FLOOR = "#222222", "#dddddd", "#1f77b4", "#d62728", "#ff7f0e"


@dataclass(frozen=True)
class Point:
    """One model on the plot: the source (step 0) or the net after a pruning step."""

    step: int
    macs: int
    dice: float


def plot_dice_vs_macs(
    points: Sequence[Point], kept_step: int | None, dice_floor: float, path: Path, title: str
) -> None:
    """Steps joined in order, the kept step in red, the lowest allowed Dice as a dashed line."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top = MARGIN_LEFT, MARGIN_TOP
    right, bottom = SIZE[0] - MARGIN_RIGHT, SIZE[1] - MARGIN_BOTTOM
    gmacs = [p.macs / 1e9 for p in points]
    x_low, x_high = 0.0, 1.05 * max(gmacs)
    y_low, y_high = _padded_range(
        min([p.dice for p in points] + [dice_floor]), max(p.dice for p in points)
    )

    def xy(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_low) / (x_high - x_low) * (right - left),
            bottom - (y - y_low) / (y_high - y_low) * (bottom - top),
        )

    for k in range(TICKS + 1):
        x = x_low + (x_high - x_low) * k / TICKS
        y = y_low + (y_high - y_low) * k / TICKS
        px, _ = xy(x, y_low)
        _, py = xy(x_low, y)
        draw.line([(px, top), (px, bottom)], fill=GRID)
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.text((px, bottom + 6), f"{x:.3g}", fill=INK, font=font, anchor="ma")
        draw.text((left - 6, py), f"{y:.3f}", fill=INK, font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=INK)
    _, floor_y = xy(x_low, dice_floor)
    for start in range(left, right, 12):
        draw.line([(start, floor_y), (min(start + 6, right), floor_y)], fill=FLOOR, width=2)
    draw.line([xy(g, p.dice) for g, p in zip(gmacs, points, strict=True)], fill=LINE, width=2)
    for g, point in zip(gmacs, points, strict=True):
        px, py = xy(g, point.dice)
        colour = KEPT if point.step == kept_step else LINE
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=colour, outline=INK)
        draw.text(
            (px + 7, py - 7),
            "source" if point.step == 0 else str(point.step),
            fill=INK,
            font=font,
            anchor="ld",
        )
    draw.text((SIZE[0] / 2, 12), title, fill=INK, font=font, anchor="ma")
    draw.text(
        ((left + right) / 2, SIZE[1] - 20), "GMACs per image", fill=INK, font=font, anchor="ma"
    )
    draw.text((8, top - 20), "validation Dice", fill=INK, font=font, anchor="la")
    draw.text(
        (right, top - 20),
        "red: kept step; dashed: lowest Dice allowed",
        fill=INK,
        font=font,
        anchor="ra",
    )
    image.save(path)


def _padded_range(low: float, high: float) -> tuple[float, float]:
    """[low, high] widened by 5% each side (and to a nonzero width), so no point sits on an edge."""
    span = (high - low) or max(abs(high), 1e-3)
    return low - 0.05 * span, high + 0.05 * span


def write_report(
    work_dir: Path,
    config: CompressionConfig,
    source: Manifest,
    baseline: dict[str, Any],
    records: list[dict[str, Any]],
    kept_step: int | None,
    published: Manifest | None,
) -> dict[str, Any]:
    """Write report.json and report.png into ``work_dir``; returns the JSON payload."""
    kept = next((r for r in records if r["step"] == kept_step), None)
    report = {
        "model": source.name,
        "source_version": source.version,
        "version": None if published is None else published.version,
        "job_id": config.job_id,
        "method": config.method,
        "settings": config.settings(),
        "baseline": baseline,
        "steps": records,
        "kept_step": kept_step,
        "target_reached": kept is not None and _target_reached(config, kept),
        "metrics": None if published is None else published.metrics.model_dump(),
    }
    write_json(work_dir / REPORT_JSON, report)
    points = [Point(0, baseline["macs"], baseline["val_dice"])]
    points += [Point(r["step"], r["macs"], r["val_dice"]) for r in records]
    plot_dice_vs_macs(
        points,
        kept_step,
        baseline["val_dice"] - config.max_dice_drop / 100,
        work_dir / REPORT_PNG,
        f"{source.name} v{source.version}: {config.method}, {len(records)} of {config.steps} steps",
    )
    return report


def _target_reached(config: CompressionConfig, kept: dict[str, Any]) -> bool:
    if config.flops_reduction is not None:
        return kept["macs_fraction"] <= 1 - config.flops_reduction + 1e-6
    return kept["step"] == config.steps
