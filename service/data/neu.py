"""NEU-Seg (hot-rolled strip surface defects): 200x200 images with class-index masks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from service.data.base import DefectClass, Sample

NEU_CLASSES: tuple[DefectClass, ...] = (
    DefectClass(id=1, name="inclusion"),
    DefectClass(id=2, name="patches"),
    DefectClass(id=3, name="scratches"),
)
SPLITS = ("train", "val", "test")


def default_neu_root() -> Path:
    """Where the shared copy lives: ``../shared/data/neu-seg`` beside the repository root."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "neu-seg"


class NeuSegDataset:
    """One split of NEU-Seg, as listed in ``root/manifest.csv`` (``stem,split,...``)."""

    def __init__(self, root: Path, split: str) -> None:
        root = Path(root)
        if split not in SPLITS:
            raise ValueError(f"unknown NEU-Seg split {split!r}; expected one of {SPLITS}")
        manifest = root / "manifest.csv"
        for needed in (root, manifest):
            if not needed.exists():
                raise FileNotFoundError(
                    f"NEU-Seg: {needed} does not exist; the data is expected in "
                    f"../shared/data/neu-seg beside the repository (see default_neu_root())"
                )
        self.root = root
        self.classes = NEU_CLASSES
        with manifest.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {"stem", "split"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{manifest}: expected columns 'stem' and 'split'")
            self.image_ids = sorted(row["stem"] for row in reader if row["split"] == split)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        stem = self.image_ids[index]
        with Image.open(self.root / "images" / f"{stem}.jpg") as file:
            image = np.asarray(file.convert("L"), dtype=np.uint8)
        mask_path = self.root / "masks" / f"{stem}.png"
        with Image.open(mask_path) as file:
            # Raw pixel values are the class indices: no mode conversion, which would remap them.
            index_mask = np.asarray(file)
        if index_mask.shape != image.shape or index_mask.max() > len(self.classes):
            raise ValueError(
                f"{mask_path}: expected a {image.shape} class-index mask with values "
                f"0..{len(self.classes)}, got shape {index_mask.shape}, max {index_mask.max()}"
            )
        class_ids = np.arange(1, len(self.classes) + 1, dtype=index_mask.dtype)
        masks = (index_mask[None] == class_ids[:, None, None]).astype(np.uint8)
        return Sample(image_id=stem, image=image, masks=masks)
