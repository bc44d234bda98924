"""Synthetic steel strips with exact defect masks, written as a Severstal-format dataset.

A strip is a rolled-steel background (streaks along the rolling direction x, an illumination
gradient across the strip, fine grain) plus 1-3 defects on about half of the strips. Each defect
is an intensity change on its footprint only, and footprints never overlap, so every class mask
is exactly the set of pixels that defect altered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from service import rle
from service.data.base import DefectClass
from service.data.severstal import write_classes, write_train_csv

HEIGHT, WIDTH = 256, 1600
SYNTHETIC_CLASSES = (
    DefectClass(1, "pits"),
    DefectClass(2, "edge_crack"),
    DefectClass(3, "scratch"),
    DefectClass(4, "rolled_in_scale"),
)
NUM_CLASSES = len(SYNTHETIC_CLASSES)
# Smallest intensity change on a defect pixel: keeps every mask pixel visibly altered after
# rounding to uint8.
_MIN_CONTRAST = 12.0
_PLACEMENT_TRIES = 20

# A drawn defect: top-left corner on the strip and the intensity change over its bounding box,
# nonzero exactly on the defect's footprint.
Defect = tuple[int, int, np.ndarray]


def _upsample(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Smoothly resize a small float field to ``shape`` (height, width)."""
    image = Image.fromarray(field.astype(np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def _background(rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(95.0, 135.0)
    across = np.linspace(-1.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
    gradient = rng.uniform(-18.0, 18.0) * across + rng.uniform(-8.0, 8.0) * across**2
    drift = _upsample(rng.standard_normal((1, 6)), (1, WIDTH)) * 4.0
    # Rolling streaks: each row has its own brightness, slowly varying along x.
    streaks = _upsample(rng.standard_normal((HEIGHT, 12)), (HEIGHT, WIDTH)) * 2.5
    bands = _upsample(rng.standard_normal((12, 5)), (HEIGHT, WIDTH)) * 4.0
    grain = rng.standard_normal((HEIGHT, WIDTH), dtype=np.float32)
    grain = (grain + np.roll(grain, 1, axis=1)) * 2.5  # slightly elongated along x
    return (level + gradient + drift + streaks + bands + grain).astype(np.float32)


def _quantise(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Squared normalised distance to (cy, cx): < 1 inside the ellipse."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2


def _pits(rng: np.random.Generator) -> Defect:
    """Class 1: a cluster of a few small dark blobs."""
    spread = rng.uniform(6.0, 22.0)
    size = int(2 * spread + 16)
    delta = np.zeros((size, size), dtype=np.float32)
    for _ in range(rng.integers(3, 8)):
        angle, radius = rng.uniform(0, 2 * np.pi), spread * np.sqrt(rng.random())
        cy, cx = size / 2 + radius * np.sin(angle), size / 2 + radius * np.cos(angle)
        distance = _ellipse(delta.shape, cy, cx, rng.uniform(1.5, 4.5), rng.uniform(1.5, 5.5))
        depth = rng.uniform(40.0, 70.0) * (0.6 + 0.4 * (1 - np.minimum(distance, 1)))
        delta = np.where(distance < 1, np.minimum(delta, -depth), delta)
    return _place(rng, delta)


def _edge_crack(rng: np.random.Generator) -> Defect:
    """Class 2: a thin dark jagged crack from the top or bottom strip edge inward."""
    length = int(rng.integers(25, 110))
    steps = rng.integers(-2, 3, size=length) + rng.choice([-1, 1]) * (rng.random(length) < 0.3)
    path = np.cumsum(steps)
    widths = np.maximum(1, np.rint(np.linspace(rng.uniform(2.5, 5.0), 1.0, length))).astype(int)
    left_edge = path - widths // 2
    offset = -left_edge.min()
    delta = np.zeros((length, int((left_edge + widths).max()) + offset), dtype=np.float32)
    darkness = rng.uniform(55.0, 85.0) * rng.uniform(0.8, 1.0, size=length)
    for row in range(length):
        start = left_edge[row] + offset
        delta[row, start : start + widths[row]] = -darkness[row]
    left = int(rng.integers(0, WIDTH - delta.shape[1]))
    if rng.random() < 0.5:
        return 0, left, delta
    return HEIGHT - length, left, delta[::-1].copy()


def _scratch(rng: np.random.Generator) -> Defect:
    """Class 3: a long thin bright or dark line, slightly slanted from the rolling direction."""
    length = int(rng.integers(200, 1100))
    width = int(rng.integers(1, 4))
    slope = np.tan(np.radians(rng.uniform(-3.0, 3.0)))
    xs = np.arange(length)
    wobble = _upsample(rng.standard_normal((1, 8)), (1, length))[0] * 0.8
    ys = slope * xs + wobble
    rows = np.rint(ys - ys.min()).astype(int)
    delta = np.zeros((int(rows.max()) + width, length), dtype=np.float32)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    fading = _upsample(rng.uniform(0.7, 1.0, size=(1, 6)), (1, length))[0]
    strength = rng.uniform(30.0, 60.0) * fading
    for k in range(width):
        delta[rows + k, xs] = sign * np.maximum(strength, _MIN_CONTRAST)
    return _place(rng, delta)


def _rolled_in_scale(rng: np.random.Generator) -> Defect:
    """Class 4: a large irregular dark patch with a rough, flaky texture."""
    height, width = int(rng.integers(40, 130)), int(rng.integers(90, 320))
    # A few overlapping ellipses, elongated along the rolling direction, with a ragged outline.
    envelope = np.full((height, width), -np.inf)
    for _ in range(rng.integers(3, 7)):
        ry, rx = height * rng.uniform(0.2, 0.35), width * rng.uniform(0.15, 0.3)
        cy, cx = rng.uniform(ry, height - ry), rng.uniform(rx, width - rx)
        envelope = np.maximum(envelope, 1 - _ellipse((height, width), cy, cx, ry, rx))
    ragged = _upsample(rng.standard_normal((height // 6, width // 8)), (height, width))
    footprint = (envelope + 0.25 * ragged > 0.2) | (envelope > 0.9)
    flakes = _upsample(rng.standard_normal((height // 4, width // 16)), (height, width))
    speckle = rng.uniform(0.0, 1.0, size=(height, width))
    roughness = np.clip(0.7 + 0.2 * flakes + 0.3 * (speckle - 0.5), 0.3, 1.2)
    darkness = np.maximum(rng.uniform(30.0, 50.0) * roughness, _MIN_CONTRAST)
    return _place(rng, np.where(footprint, -darkness, 0.0).astype(np.float32))


def _place(rng: np.random.Generator, delta: np.ndarray) -> Defect:
    top = int(rng.integers(0, HEIGHT - delta.shape[0] + 1))
    left = int(rng.integers(0, WIDTH - delta.shape[1] + 1))
    return top, left, delta


# Class id k is drawn by _DRAWERS[k - 1].
_DRAWERS: tuple[Callable[[np.random.Generator], Defect], ...] = (
    _pits,
    _edge_crack,
    _scratch,
    _rolled_in_scale,
)


def render_strip(
    rng: np.random.Generator, *, defect_free_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Render one strip: image uint8 (256, 1600) and masks uint8 (4, 256, 1600), 0/1."""
    background = _background(rng)
    image = background.copy()
    masks = np.zeros((NUM_CLASSES, HEIGHT, WIDTH), dtype=bool)
    occupied = np.zeros((HEIGHT, WIDTH), dtype=bool)
    n_defects = 0 if rng.random() < defect_free_fraction else int(rng.integers(1, 4))
    for _ in range(n_defects):
        class_id = int(rng.integers(1, NUM_CLASSES + 1))
        for _ in range(_PLACEMENT_TRIES):
            top, left, delta = _DRAWERS[class_id - 1](rng)
            window = np.s_[top : top + delta.shape[0], left : left + delta.shape[1]]
            footprint = delta != 0
            if not (occupied[window] & footprint).any():
                image[window] += delta
                masks[class_id - 1][window] |= footprint
                occupied[window] |= footprint
                break
    quantised = _quantise(image)
    # Clipping at 0/255 could leave a footprint pixel unchanged; such a pixel is not a defect.
    masks &= quantised != _quantise(background)
    return quantised, masks.astype(np.uint8)


def generate_synthetic(
    out_dir: Path,
    n: int,
    seed: int,
    *,
    defect_free_fraction: float = 0.5,
    progress: bool = True,
) -> Path:
    """Write ``n`` strips as a Severstal-format dataset under ``out_dir`` and return it.

    ``out_dir/train.csv`` (new format), ``out_dir/train_images/<id>.png`` and
    ``out_dir/classes.json`` naming the four classes. Strip i is drawn
    from its own generator seeded with (seed, i): the same (n, seed) gives byte-identical files,
    and the first k strips do not depend on n.
    """
    if n < 0 or seed < 0:
        raise ValueError(f"n and seed must be non-negative, got n={n}, seed={seed}")
    out_dir = Path(out_dir)
    image_dir = out_dir / "train_images"
    names = [f"syn{seed:04d}_{i:05d}.png" for i in range(n)]
    if image_dir.exists():
        # Stray images would be read back as defect-free strips.
        strays = sorted({p.name for p in image_dir.iterdir()} - set(names))
        if strays:
            raise FileExistsError(f"{image_dir} holds files this run would not write: {strays[:5]}")
    image_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[int, str]] = {}
    for i, name in enumerate(tqdm(names, desc="synthetic strips", disable=not progress)):
        image, masks = render_strip(
            np.random.default_rng([seed, i]), defect_free_fraction=defect_free_fraction
        )
        Image.fromarray(image).save(image_dir / name, compress_level=1)
        rows[name] = {k + 1: rle.encode(mask) for k, mask in enumerate(masks) if mask.any()}
    write_train_csv(out_dir / "train.csv", rows)
    write_classes(out_dir, SYNTHETIC_CLASSES)
    return out_dir
