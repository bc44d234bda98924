"""Small data sets written in the real sets' layouts, for tests that read folders."""

from __future__ import annotations

from collections.abc import Iterable
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
