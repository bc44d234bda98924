"""Synthetic steel strips with exact defect masks, written as a Severstal-format dataset.

A strip is drawn as a line camera sees one: rolled steel (streaks along the rolling direction,
which may run along or across the frame, illumination that varies across and along it, grain,
coarse mottling, isolated speckle, harmless stains and bands that are not defects; with a
texture bank, real clean steel texture on most strips, see service.data.textures), black
off-steel margins where the frame runs past the strip's end or edge, then the camera (blur,
sensor noise, JPEG compression). About half of the strips are clean; the others carry 1-3
defects of four classes drawn with the look of the Severstal classes: clusters of pits, cracks
from the steel's edge, long scratches (single or in bundles, at any angle), flaky rolled-in
scale patches; with a defect bank, half of the pits, scratches and scale patches are real
defects of NEU-Seg instead, see service.data.real_defects. The four classes are equally likely
unless a class prior says otherwise (``SEVERSTAL_CLASS_PRIOR``: as often as on real strips).

Each defect changes intensity on its footprint only, on steel only, and footprints never
overlap, so before the camera every class mask is exactly the set of pixels that defect
altered; the camera then blurs and compresses the whole frame, as a real one does. Labelled
``outline`` instead, each class mask is the region an inspector draws around its defects, as
Severstal's annotators did (loose polygons, not pixels): gaps within a cluster or a bundle
closed, a margin added, cut to steel.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from service import rle
from service.data.base import DefectClass
from service.data.real_defects import RealDefects
from service.data.severstal import write_classes, write_train_csv
from service.data.textures import SteelTextures

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
_OFF_STEEL_LEVEL = 12.0
"""Brightest off-steel pixel value before noise: the margins are near black."""
_MIN_STEEL_WIDTH = 500
_MARGIN_SIDES = ((), ("left",), ("right",), ("left", "right"))
_MARGIN_ODDS = np.cumsum((0.55, 0.25, 0.15))
"""Where a frame shows black off-steel margins: none, left, right (these odds), or both."""

_REAL_TEXTURE_SHARE = 0.75
"""With a texture bank, the share of strips whose steel carries real texture (the rest keep
the procedural texture alone, so that smooth steel stays in the data)."""
_REAL_TEXTURE_CONTRAST = (0.4, 1.2)
"""The factor on the real texture's own contrast."""
_REAL_DEFECT_SHARE = 0.5
"""With a bank of real defects, the share of a class's defects taken from it (the rest stay
drawn, so that the drawn variety stays in the data)."""
SEVERSTAL_CLASS_PRIOR = (897.0, 247.0, 5150.0, 801.0)
"""How often each class (pits, edge cracks, scratches, rolled-in scale) is the one a defect
belongs to on real strips, as weights: the images of Severstal's public training set (12,568)
that hold each class, so 13%, 3%, 73% and 11% of the defective (image, class) pairs. A net
tuned on strips whose classes are equally common is tuned for a prior several times too high
for every class but scratches; drawn with this one, its gates and thresholds see the rarity
they will meet."""

ANNOTATIONS = ("exact", "outline")
"""How a class mask is labelled: the exact pixels its defects altered, or the outline an
inspector draws around them."""
_OUTLINE_CLOSING = ((10, 20), (2, 4), (6, 12), (6, 12))
"""Per class (pits, edge cracks, scratches, scale): the range of the radius within which an
inspector's outline joins separate parts of a defect (the spots of a pit cluster, the strands
of a scratch bundle, the flakes of a scale patch) into one region."""
_OUTLINE_MARGIN = (4, 12)
"""The range of the margin an inspector's outline leaves around a defect, in pixels."""

# A drawn defect: top-left corner on the strip and the intensity change over its bounding box,
# nonzero exactly on the defect's footprint.
Defect = tuple[int, int, np.ndarray]


@dataclass(frozen=True)
class Scene:
    """The frame before any defect: intensities, and where there is steel at all."""

    background: np.ndarray
    """(H, W) float32 intensities, margins included."""
    steel: np.ndarray
    """(H, W) bool: False on the off-steel margins."""


@dataclass(frozen=True)
class Composition:
    """A strip before the camera: the scene, the scene with its defects, and their masks."""

    scene: Scene
    image: np.ndarray
    """(H, W) uint8: the scene with its defects, quantised."""
    masks: np.ndarray
    """(classes, H, W) uint8 0/1."""


def _upsample(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Smoothly resize a small float field to ``shape`` (height, width)."""
    image = Image.fromarray(field.astype(np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def _rolling_texture(rng: np.random.Generator) -> np.ndarray:
    """Streaks along the rolling direction (the frame's x or y), grain elongated with them,
    and, on some strips, coarse mottling: steel's texture varies from coil to coil, and a net
    that has seen only one kind calls every other kind a defect."""
    along_x = rng.random() < 0.5
    lines, length = (HEIGHT, WIDTH) if along_x else (WIDTH, HEIGHT)
    streaks = _upsample(rng.standard_normal((lines, 10)), (lines, length)) * rng.uniform(1.0, 10.0)
    grain = rng.standard_normal((lines, length), dtype=np.float32)
    grain = (grain + np.roll(grain, 1, axis=1) + np.roll(grain, 2, axis=1)) * rng.uniform(1.0, 6.0)
    texture = streaks + grain
    texture = texture if along_x else texture.T
    if rng.random() < 0.5:
        mottling = _upsample(rng.standard_normal((HEIGHT // 8, WIDTH // 8)), (HEIGHT, WIDTH))
        texture = texture + mottling * rng.uniform(2.0, 12.0)
    return texture


def _speckle(rng: np.random.Generator) -> np.ndarray:
    """Isolated bright and dark pixels (dust, reflections, sensor defects): not pits, which are
    clusters of blobs."""
    speckle = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    count = int(rng.integers(0, 2000))
    rows, cols = rng.integers(0, HEIGHT, count), rng.integers(0, WIDTH, count)
    speckle[rows, cols] = rng.choice([-1.0, 1.0], count) * rng.uniform(8.0, 40.0, count)
    return speckle


def _illumination(rng: np.random.Generator) -> np.ndarray:
    """A smooth light field: a gradient across the strip, a drift along it, soft hot spots."""
    across = np.linspace(-1.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
    along = np.linspace(-1.0, 1.0, WIDTH, dtype=np.float32)[None, :]
    field = rng.uniform(-20.0, 20.0) * across + rng.uniform(-10.0, 10.0) * across**2
    field = field + rng.uniform(-25.0, 25.0) * along
    field = field + _upsample(rng.standard_normal((3, 8)), (HEIGHT, WIDTH)) * rng.uniform(2.0, 9.0)
    return field


def _harmless_marks(rng: np.random.Generator) -> np.ndarray:
    """Stains, reflectance bands and faint rolling marks: real clean steel has them, and a net
    must not call them defects."""
    marks = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    for _ in range(int(rng.integers(0, 7))):
        kind = rng.integers(3)
        if kind == 0:  # a soft stain
            cy, cx = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH)
            ry, rx = rng.uniform(20, 120), rng.uniform(40, 400)
            blob = np.exp(-_ellipse((HEIGHT, WIDTH), cy, cx, ry, rx))
            marks += rng.uniform(-22.0, 22.0) * blob
        elif kind == 1:  # a band of another reflectance across the strip
            centre, half = rng.uniform(0, WIDTH), rng.uniform(20, 250)
            x = np.arange(WIDTH, dtype=np.float32)
            softness = rng.uniform(5, 40)
            band = 1.0 / (1.0 + np.exp(np.minimum((np.abs(x - centre) - half) / softness, 60.0)))
            marks += rng.uniform(-20.0, 20.0) * band[None, :]
        else:  # a faint, wide rolling mark
            row = int(rng.integers(0, HEIGHT))
            y = np.arange(HEIGHT, dtype=np.float32)[:, None]
            marks += rng.uniform(-10.0, 10.0) * np.exp(-(((y - row) / rng.uniform(2, 10)) ** 2))
    return marks


def _steel_region(rng: np.random.Generator) -> np.ndarray:
    """Where the frame shows steel: all of it, or all but a black margin at one or both ends
    of the frame, bounded by a slightly slanted, slightly ragged line."""
    steel = np.ones((HEIGHT, WIDTH), dtype=bool)
    sides = _MARGIN_SIDES[int(np.searchsorted(_MARGIN_ODDS, rng.random(), side="right"))]
    budget = WIDTH - _MIN_STEEL_WIDTH
    columns = np.arange(WIDTH)[None, :]
    rows = np.arange(HEIGHT, dtype=np.float32)[:, None]
    for side in sides:
        width = rng.uniform(20, budget / len(sides))
        slope = np.tan(np.radians(rng.uniform(-25.0, 25.0)))
        wiggle = _upsample(rng.standard_normal((6, 1)), (HEIGHT, 1)) * rng.uniform(0.0, 6.0)
        edge = width + slope * (rows - HEIGHT / 2) + wiggle
        edge = np.clip(edge, 0, budget / len(sides))
        if side == "left":
            steel &= columns >= edge
        else:
            steel &= columns < WIDTH - edge
    return steel


def _scene(rng: np.random.Generator, textures: SteelTextures | None = None) -> Scene:
    level = rng.uniform(55.0, 165.0)
    texture = _rolling_texture(rng) + _harmless_marks(rng) + _speckle(rng)
    steel_intensity = level + _illumination(rng) + texture
    steel = _steel_region(rng)
    off_steel = rng.uniform(0.0, _OFF_STEEL_LEVEL) + rng.standard_normal(
        (HEIGHT, WIDTH), dtype=np.float32
    ) * rng.uniform(0.5, 2.0)
    if textures is not None and rng.random() < _REAL_TEXTURE_SHARE:
        contrast = rng.uniform(*_REAL_TEXTURE_CONTRAST)
        steel_intensity = steel_intensity + contrast * textures.draw(rng, HEIGHT, WIDTH)
    background = np.where(steel, np.maximum(steel_intensity, 30.0), off_steel)
    return Scene(background.astype(np.float32), steel)


def _quantise(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Squared normalised distance to (cy, cx): < 1 inside the ellipse."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2


def _sign(rng: np.random.Generator, dark: float) -> float:
    """-1 (darker than the steel) with probability ``dark``, else +1."""
    return -1.0 if rng.random() < dark else 1.0


def _pits(rng: np.random.Generator, steel: np.ndarray) -> Defect:
    """Class 1: a cluster of small spots, mostly dark, some bright."""
    spread = rng.uniform(6.0, 40.0)
    size = int(2 * spread + 16)
    delta = np.zeros((size, size), dtype=np.float32)
    sign = _sign(rng, 0.75)
    for _ in range(rng.integers(3, 16)):
        angle, radius = rng.uniform(0, 2 * np.pi), spread * np.sqrt(rng.random())
        cy, cx = size / 2 + radius * np.sin(angle), size / 2 + radius * np.cos(angle)
        distance = _ellipse(delta.shape, cy, cx, rng.uniform(1.5, 4.5), rng.uniform(1.5, 5.5))
        depth = rng.uniform(20.0, 70.0) * (0.6 + 0.4 * (1 - np.minimum(distance, 1)))
        depth = np.maximum(depth, _MIN_CONTRAST)
        spot = np.where(distance < 1, sign * depth, 0.0)
        delta = np.where(np.abs(spot) > np.abs(delta), spot, delta)
    return _place(rng, delta, steel)


def _edge_crack(rng: np.random.Generator, steel: np.ndarray) -> Defect:
    """Class 2: a thin dark jagged crack running into the steel from its edge: the frame's top
    or bottom row, or the boundary of an off-steel margin."""
    length = int(rng.integers(25, 130))
    steps = rng.integers(-2, 3, size=length) + rng.choice([-1, 1]) * (rng.random(length) < 0.3)
    path = np.cumsum(steps)
    widths = np.maximum(1, np.rint(np.linspace(rng.uniform(2.5, 6.0), 1.0, length))).astype(int)
    left_edge = path - widths // 2
    offset = -left_edge.min()
    delta = np.zeros((length, int((left_edge + widths).max()) + offset), dtype=np.float32)
    darkness = rng.uniform(40.0, 85.0) * rng.uniform(0.8, 1.0, size=length)
    for row in range(length):
        start = left_edge[row] + offset
        delta[row, start : start + widths[row]] = -np.maximum(darkness[row], _MIN_CONTRAST)
    if not steel[:, 0].all() and rng.random() < 0.5:
        # From the left margin's boundary, into the steel (rotated to run along x).
        crack = delta.T.copy()
        top = int(rng.integers(0, HEIGHT - crack.shape[0] + 1))
        boundary = int(np.argmax(steel[top + crack.shape[0] // 2]))
        return top, min(boundary, WIDTH - crack.shape[1]), crack
    columns = np.flatnonzero(steel.all(axis=0))
    left = int(rng.choice(columns[columns <= WIDTH - delta.shape[1]]))
    if rng.random() < 0.5:
        return 0, left, delta
    return HEIGHT - length, left, delta[::-1].copy()


def _line_rows(
    rng: np.random.Generator, length: int, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) offsets of a slightly wobbly line of ``length`` at ``angle`` degrees."""
    t = np.arange(length, dtype=np.float32)
    wobble = _upsample(rng.standard_normal((1, 8)), (1, length))[0] * 1.0
    theta = np.radians(angle)
    rows = t * np.sin(theta) + wobble * np.cos(theta)
    cols = t * np.cos(theta) - wobble * np.sin(theta)
    rows, cols = np.rint(rows).astype(int), np.rint(cols).astype(int)
    return rows - rows.min(), cols - cols.min()


def _scratch(rng: np.random.Generator, steel: np.ndarray) -> Defect:
    """Class 3: a long thin bright or dark scratch, or a bundle of parallel ones, along the
    strip, across it or at a slant."""
    direction = rng.integers(3)
    if direction == 0:
        angle, length = rng.uniform(-4.0, 4.0), int(rng.integers(150, 1200))
    elif direction == 1:
        angle, length = rng.uniform(80.0, 100.0), int(rng.integers(60, 256))
    else:
        angle = rng.choice([-1, 1]) * rng.uniform(15.0, 70.0)
        length = int(rng.integers(80, 600))
    width = int(rng.integers(1, 5))
    sign = _sign(rng, 0.5)
    rows, cols = _line_rows(rng, length, float(angle))
    strands = int(rng.integers(1, 5)) if rng.random() < 0.35 else 1
    gap = rng.uniform(4.0, 14.0)
    normal = np.array([np.cos(np.radians(angle)), -np.sin(np.radians(angle))])
    offsets = [np.rint(k * gap * normal).astype(int) for k in range(strands)]
    all_rows = np.concatenate([rows + dy + k for dy, _ in offsets for k in range(width)])
    all_cols = np.concatenate([cols + dx for _, dx in offsets for _ in range(width)])
    all_rows, all_cols = all_rows - all_rows.min(), all_cols - all_cols.min()
    shape = (int(all_rows.max()) + 1, int(all_cols.max()) + 1)
    if shape[0] > HEIGHT or shape[1] > WIDTH:
        keep = (all_rows < HEIGHT) & (all_cols < WIDTH)
        all_rows, all_cols = all_rows[keep], all_cols[keep]
        shape = (min(shape[0], HEIGHT), min(shape[1], WIDTH))
    fading = rng.uniform(0.6, 1.0, size=all_rows.size)
    strength = np.maximum(rng.uniform(18.0, 60.0) * fading, _MIN_CONTRAST)
    delta = np.zeros(shape, dtype=np.float32)
    delta[all_rows, all_cols] = sign * strength
    return _place(rng, delta, steel)


def _rolled_in_scale(rng: np.random.Generator, steel: np.ndarray) -> Defect:
    """Class 4: an irregular dark patch with a rough, flaky texture, or a streak of flakes
    pressed in along the rolling direction."""
    height, width = int(rng.integers(30, 140)), int(rng.integers(60, 360))
    if rng.random() < 0.3:
        height, width = int(rng.integers(12, 40)), int(rng.integers(200, 700))
    envelope = np.full((height, width), -np.inf)
    for _ in range(rng.integers(3, 8)):
        ry, rx = height * rng.uniform(0.15, 0.35), width * rng.uniform(0.1, 0.3)
        cy, cx = rng.uniform(ry, height - ry), rng.uniform(rx, width - rx)
        envelope = np.maximum(envelope, 1 - _ellipse((height, width), cy, cx, ry, rx))
    ragged = _upsample(rng.standard_normal((max(2, height // 6), width // 8)), (height, width))
    footprint = (envelope + 0.3 * ragged > 0.2) | (envelope > 0.9)
    flakes = _upsample(rng.standard_normal((max(2, height // 4), width // 12)), (height, width))
    speckle = rng.uniform(0.0, 1.0, size=(height, width))
    roughness = np.clip(0.7 + 0.25 * flakes + 0.35 * (speckle - 0.5), 0.3, 1.3)
    darkness = np.maximum(rng.uniform(20.0, 50.0) * roughness, _MIN_CONTRAST)
    return _place(rng, np.where(footprint, -darkness, 0.0).astype(np.float32), steel)


def _place(rng: np.random.Generator, delta: np.ndarray, steel: np.ndarray) -> Defect:
    """A position for ``delta`` whose centre lies on steel (the rest is cut to steel later)."""
    for _ in range(_PLACEMENT_TRIES):
        top = int(rng.integers(0, HEIGHT - delta.shape[0] + 1))
        left = int(rng.integers(0, WIDTH - delta.shape[1] + 1))
        if steel[top + delta.shape[0] // 2, left + delta.shape[1] // 2]:
            break
    return top, left, delta


# Class id k is drawn by _DRAWERS[k - 1].
_DRAWERS: tuple[Callable[[np.random.Generator, np.ndarray], Defect], ...] = (
    _pits,
    _edge_crack,
    _scratch,
    _rolled_in_scale,
)


def _defect(
    rng: np.random.Generator, class_id: int, steel: np.ndarray, defects: RealDefects | None
) -> Defect:
    """A defect of ``class_id``: real (from ``defects``, when it has that class) or drawn."""
    if defects is not None and defects.has(class_id) and rng.random() < _REAL_DEFECT_SHARE:
        return _place(rng, defects.draw(rng, class_id, HEIGHT, WIDTH), steel)
    return _DRAWERS[class_id - 1](rng, steel)


def compose_strip(
    rng: np.random.Generator,
    *,
    defect_free_fraction: float = 0.5,
    textures: SteelTextures | None = None,
    defects: RealDefects | None = None,
    class_prior: Sequence[float] | None = None,
    annotation: str = "exact",
) -> Composition:
    """The scene and its defects, before the camera; ``textures``, when given, lends most
    strips real steel texture (see service.data.textures), ``defects`` half of the pits,
    scratches and scale patches a real defect's look (see service.data.real_defects).
    ``class_prior`` gives each class's probability for a defect (e.g. SEVERSTAL_CLASS_PRIOR);
    without it the four classes are equally likely. ``annotation`` is one of ANNOTATIONS."""
    if annotation not in ANNOTATIONS:
        raise ValueError(f"annotation must be one of {ANNOTATIONS}, got {annotation!r}")
    scene = _scene(rng, textures)
    image = scene.background.copy()
    masks = np.zeros((NUM_CLASSES, HEIGHT, WIDTH), dtype=bool)
    occupied = ~scene.steel
    probabilities = None if class_prior is None else _class_probabilities(class_prior)
    n_defects = 0 if rng.random() < defect_free_fraction else int(rng.integers(1, 4))
    for _ in range(n_defects):
        class_id = _defect_class(rng, probabilities)
        for _ in range(_PLACEMENT_TRIES):
            top, left, delta = _defect(rng, class_id, scene.steel, defects)
            window = np.s_[top : top + delta.shape[0], left : left + delta.shape[1]]
            footprint = (delta != 0) & scene.steel[window]
            if footprint.any() and not (occupied[window] & footprint).any():
                image[window] += np.where(footprint, delta, 0.0)
                masks[class_id - 1][window] |= footprint
                occupied[window] |= footprint
                break
    quantised = _quantise(image)
    # Clipping at 0/255 could leave a footprint pixel unchanged; such a pixel is not a defect.
    masks &= quantised != _quantise(scene.background)
    if annotation == "outline":
        masks = _outlines(rng, masks, scene.steel)
    return Composition(scene, quantised, masks.astype(np.uint8))


def _outlines(rng: np.random.Generator, masks: np.ndarray, steel: np.ndarray) -> np.ndarray:
    """Each class's exact mask as an inspector outlines it: parts closer than the class's
    closing radius joined, then a margin around the whole, on steel only. Classes without a
    defect draw nothing, so a clean strip's draws are those of the exact labels."""
    outlined = np.zeros_like(masks)
    for k in np.flatnonzero(masks.any(axis=(1, 2))):
        low, high = _OUTLINE_CLOSING[k]
        closing = int(rng.integers(low, high + 1))
        margin = int(rng.integers(_OUTLINE_MARGIN[0], _OUTLINE_MARGIN[1] + 1))
        joined = ~_dilate(~_dilate(masks[k], closing), closing)
        outlined[k] = _dilate(joined, margin) & steel
    return outlined


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by a (2 radius + 1)-pixel square, one separable pass per axis; the frame
    outside counts as unmasked."""
    grown = mask
    for axis in (0, 1):
        padding = [(0, 0), (0, 0)]
        padding[axis] = (radius, radius)
        padded = np.pad(grown, padding)
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=axis)
        grown = windows.any(axis=-1)
    return grown


def _class_probabilities(prior: Sequence[float]) -> np.ndarray:
    """A class prior's weights as probabilities; refused unless there is one non-negative
    weight per class and not all are zero."""
    weights = np.asarray(prior, dtype=np.float64)
    if weights.shape != (NUM_CLASSES,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"a class prior needs {NUM_CLASSES} non-negative weights, got {prior}")
    return weights / weights.sum()


def _defect_class(rng: np.random.Generator, probabilities: np.ndarray | None) -> int:
    """A defect's class id (1-based); uniform without probabilities, and then the same draw
    as before priors existed, so that datasets made without one keep their bytes."""
    if probabilities is None:
        return int(rng.integers(1, NUM_CLASSES + 1))
    return int(rng.choice(NUM_CLASSES, p=probabilities)) + 1


def camera(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """What the line camera adds: a little blur, sensor noise, JPEG compression."""
    frame = Image.fromarray(image)
    if rng.random() < 0.5:
        frame = frame.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.9))))
    noisy = np.asarray(frame, dtype=np.float32) + rng.standard_normal(
        image.shape, dtype=np.float32
    ) * rng.uniform(0.5, 4.0)
    frame = Image.fromarray(_quantise(noisy))
    if rng.random() < 0.85:
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
        frame = Image.open(io.BytesIO(buffer.getvalue()))
    return np.asarray(frame.convert("L"))


def render_strip(
    rng: np.random.Generator,
    *,
    defect_free_fraction: float = 0.5,
    textures: SteelTextures | None = None,
    defects: RealDefects | None = None,
    class_prior: Sequence[float] | None = None,
    annotation: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """Render one strip: image uint8 (256, 1600) as the camera sees it and masks uint8
    (4, 256, 1600), 0/1."""
    composition = compose_strip(
        rng,
        defect_free_fraction=defect_free_fraction,
        textures=textures,
        defects=defects,
        class_prior=class_prior,
        annotation=annotation,
    )
    return camera(rng, composition.image), composition.masks


def generate_synthetic(
    out_dir: Path,
    n: int,
    seed: int,
    *,
    defect_free_fraction: float = 0.5,
    textures: SteelTextures | None = None,
    defects: RealDefects | None = None,
    class_prior: Sequence[float] | None = None,
    annotation: str = "exact",
    progress: bool = True,
) -> Path:
    """Write ``n`` strips as a Severstal-format dataset under ``out_dir`` and return it.

    ``out_dir/train.csv`` (new format), ``out_dir/train_images/<id>.png`` and
    ``out_dir/classes.json`` naming the four classes. Strip i is drawn
    from its own generator seeded with (seed, i): the same (n, seed) gives byte-identical files,
    and the first k strips do not depend on n (for the same banks, or none).
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
            np.random.default_rng([seed, i]),
            defect_free_fraction=defect_free_fraction,
            textures=textures,
            defects=defects,
            class_prior=class_prior,
            annotation=annotation,
        )
        Image.fromarray(image).save(image_dir / name, compress_level=1)
        rows[name] = {k + 1: rle.encode(mask) for k, mask in enumerate(masks) if mask.any()}
    write_train_csv(out_dir / "train.csv", rows)
    write_classes(out_dir, SYNTHETIC_CLASSES)
    return out_dir
