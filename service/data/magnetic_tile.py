"""Magnetic-tile surface defects (Huang et al., 2018): grey images of varying size, one binary
mask each, the defect class given by the image's folder (``MT_<Class>``); ``MT_Free`` images have
no defect. Splits come from ``root/manifest.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from service.data.base import DefectClass, Sample

MAGNETIC_TILE_CLASSES: tuple[DefectClass, ...] = (
    DefectClass(id=1, name="blowhole"),
    DefectClass(id=2, name="break"),
    DefectClass(id=3, name="crack"),
    DefectClass(id=4, name="fray"),
    DefectClass(id=5, name="uneven"),
)
DEFECT_FREE = "free"
SPLITS = ("train", "val", "test")
MASK_LEVEL = 127
"""Some masks have anti-aliased edges: a pixel is defect when its value is above this."""
REQUIRED_COLUMNS = {"stem", "split", "defect_class", "image", "mask"}


def default_magnetic_tile_root() -> Path:
    """Where the shared copy lives: ``../shared/data/magnetic-tile`` beside the repository."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "magnetic-tile"


def is_magnetic_tile_folder(root: Path) -> bool:
    """A magnetic-tile folder has the defect-free images' folder beside its manifest."""
    return (root / "manifest.csv").is_file() and (root / "MT_Free").is_dir()


class MagneticTileDataset:
    """One split of the magnetic-tile set, as listed in ``root/manifest.csv``."""

    def __init__(self, root: Path, split: str) -> None:
        root = Path(root)
        if split not in SPLITS:
            raise ValueError(f"unknown magnetic-tile split {split!r}; expected one of {SPLITS}")
        manifest = root / "manifest.csv"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"magnetic-tile: {manifest} does not exist; the data is expected in "
                "../shared/data/magnetic-tile beside the repository"
            )
        self.root = root
        self.classes = MAGNETIC_TILE_CLASSES
        channel_of = {c.name: c.id - 1 for c in self.classes}
        with manifest.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = REQUIRED_COLUMNS - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{manifest}: missing columns {', '.join(sorted(missing))}")
            rows = sorted((row for row in reader if row["split"] == split), key=_stem)
        self._entries: list[tuple[str, str, str, int | None]] = []
        for row in rows:
            name = row["defect_class"].strip().lower()
            if name != DEFECT_FREE and name not in channel_of:
                raise ValueError(f"{manifest}: unknown defect class {row['defect_class']!r}")
            channel = None if name == DEFECT_FREE else channel_of[name]
            self._entries.append((row["stem"], row["image"], row["mask"], channel))
        self.image_ids = [entry[0] for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Sample:
        stem, image_path, mask_path, channel = self._entries[index]
        with Image.open(self.root / image_path) as file:
            image = np.asarray(file.convert("L"), dtype=np.uint8)
        masks = np.zeros((len(self.classes), *image.shape), dtype=np.uint8)
        with Image.open(self.root / mask_path) as file:
            defect = np.asarray(file.convert("L")) > MASK_LEVEL
        if defect.shape != image.shape:
            raise ValueError(f"{mask_path}: mask {defect.shape} differs from image {image.shape}")
        if channel is not None:
            masks[channel] = defect
        return Sample(image_id=stem, image=image, masks=masks)


def _stem(row: dict[str, str]) -> str:
    return row["stem"]
