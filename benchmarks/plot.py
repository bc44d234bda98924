"""mIoU against MACs for the baseline and every compressed method, from a results file and,
optionally, the files of other operating points of the same baseline (``--flops-reduction``).

    python -m benchmarks.plot benchmarks/results/neu-compression.json docs/neu-compression.png \
        benchmarks/results/neu-compression-r0.85.json

Drawn with Pillow (already a dependency) rather than adding matplotlib.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

SIZE = (760, 480)
LEFT, RIGHT, TOP, BOTTOM = 80, 40, 50, 70
TICKS = 5
INK, GRID = "#222222", "#dddddd"
COLOURS = {
    "baseline": "#222222",
    "fpgm": "#d62728",
    "tp_fpgm": "#ff7f0e",
    "l1": "#2ca02c",
    "random": "#1f77b4",
    "scratch": "#9467bd",
    "fpgm_int8": "#8c564b",
}


def points(
    results: dict[str, Any], others: Sequence[dict[str, Any]] = ()
) -> list[tuple[str, float, float]]:
    """(label, GMACs, mIoU) of the baseline and each method with figures; the methods of
    ``others`` are labelled with their MACs target."""
    rows = [("baseline", results["baseline"]["macs"] / 1e9, results["baseline"]["miou"])]
    for method, figures in results.get("methods", {}).items():
        rows.append((method, figures["macs"] / 1e9, figures["miou"]))
    for other in others:
        target = other["compression"]["flops_reduction"]
        for method, figures in other.get("methods", {}).items():
            rows.append((f"{method} -{target:.0%}", figures["macs"] / 1e9, figures["miou"]))
    return rows


def plot(results: dict[str, Any], path: Path, others: Sequence[dict[str, Any]] = ()) -> None:
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    rows = points(results, others)
    right, bottom = SIZE[0] - RIGHT, SIZE[1] - BOTTOM
    x_high = 1.1 * max(macs for _, macs, _ in rows)
    lowest = min(miou for _, _, miou in rows)
    y_low, y_high = max(0.0, lowest - 0.05), min(1.0, max(miou for _, _, miou in rows) + 0.05)

    def xy(macs: float, miou: float) -> tuple[float, float]:
        return (
            LEFT + macs / x_high * (right - LEFT),
            bottom - (miou - y_low) / (y_high - y_low) * (bottom - TOP),
        )

    for k in range(TICKS + 1):
        x_value, y_value = x_high * k / TICKS, y_low + (y_high - y_low) * k / TICKS
        x, _ = xy(x_value, y_low)
        _, y = xy(0, y_value)
        draw.line([x, TOP, x, bottom], fill=GRID)
        draw.line([LEFT, y, right, y], fill=GRID)
        draw.text((x - 12, bottom + 8), f"{x_value:.2f}", fill=INK, font=font)
        draw.text((LEFT - 45, y - 6), f"{y_value:.3f}", fill=INK, font=font)
    draw.rectangle([LEFT, TOP, right, bottom], outline=INK)
    _, base_y = xy(rows[0][1], rows[0][2])
    draw.line([LEFT, base_y, right, base_y], fill="#888888", width=1)
    draw.text((LEFT + 4, base_y - 14), "baseline mIoU", fill="#888888", font=font)
    caption_width = draw.textlength("baseline mIoU", font=font)
    placed: list[tuple[float, float, float]] = [(LEFT + 4, base_y - 14, caption_width)]
    for label, macs, miou in rows:
        x, y = xy(macs, miou)
        colour = COLOURS.get(label.split()[0], INK)
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=colour, outline=INK)
        text = f"{label} {miou:.3f}"
        width = draw.textlength(text, font=font)
        spots = [(x + side, y + rise) for rise in (-6, -18, 6, -30, 18) for side in (8, -8 - width)]
        free = [spot for spot in spots if not any(_overlaps(spot, width, box) for box in placed)]
        spot = (free or spots)[0]
        placed.append((*spot, width))
        draw.text(spot, text, fill=colour, font=font)
    title = (
        f"{results['dataset']}: test mIoU against GMACs at {results['native_size'][0]}x"
        f"{results['native_size'][1]} (commit {results['commit']})"
    )
    draw.text((LEFT, 18), title, fill=INK, font=font)
    draw.text((SIZE[0] // 2 - 60, SIZE[1] - 30), "GMACs per image", fill=INK, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _overlaps(spot: tuple[float, float], width: float, box: tuple[float, float, float]) -> bool:
    """Would a label at ``spot`` cover the label drawn at ``box`` (x, y, width)?"""
    x, y = spot
    other_x, other_y, other_width = box
    return x < other_x + other_width and other_x < x + width and abs(y - other_y) < 11


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__)
    parser.add_argument("results", type=Path, help="a <dataset>-compression.json")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("others", type=Path, nargs="*", help="other operating points' files")
    args = parser.parse_args(argv)
    others = [json.loads(other.read_text()) for other in args.others]
    plot(json.loads(args.results.read_text()), args.out, others)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
