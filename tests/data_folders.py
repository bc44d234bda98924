"""Small data sets written in the real sets' layouts, for tests that read folders."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def write_neu_folder(root: Path, samples: Iterable[tuple[np.ndarray, np.ndarray, str]]) -> Path:
    """NEU-Seg's layout under ``root``: ``images/imgNN.jpg``, ``masks/imgNN.png`` (class
    indices) and ``manifest.csv``, from (image, class-index mask, split) triples."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["stem,split"]
    for index, (image, mask, split) in enumerate(samples):
        stem = f"img{index:02d}"
        Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
        rows.append(f"{stem},{split}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def write_painted_neu_folder(
    root: Path,
    images: int,
    paint: Callable[[int, np.ndarray, np.ndarray], None],
    levels: tuple[int, int] = (100, 140),
) -> Path:
    """NEU's layout with ``images`` 200x200 noisy grey images, each given its defects by
    ``paint(index, image, class_index_mask)`` in place; the first image is in the validation
    split (whose pixels must never reach a bank built from the training split), the rest in
    train."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(images):
        image = rng.integers(*levels, (200, 200)).astype(np.uint8)
        mask = np.zeros((200, 200), dtype=np.uint8)
        paint(index, image, mask)
        samples.append((image, mask, "val" if index == 0 else "train"))
    return write_neu_folder(root, samples)
