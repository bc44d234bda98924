"""Datasets by name: ``neu`` / ``neu:PATH`` (NEU-Seg), ``magnetic-tile`` /
``magnetic-tile:PATH`` (magnetic-tile defects), or ``severstal:PATH`` / a bare PATH (a
Severstal-format folder with train.csv and train_images/, e.g. synthetic strips).

NEU-Seg and magnetic-tile come with fixed train, val and test splits.

Severstal-format folders have no test split: train and val come from a deterministic split
by image id (20% val); ``all`` is every image (for a folder held out as a whole, e.g. synthetic
strips made with another seed).
"""

from __future__ import annotations

from pathlib import Path

from service.data.base import SegmentationDataset, split_image_ids
from service.data.magnetic_tile import MagneticTileDataset, default_magnetic_tile_root
from service.data.neu import NeuSegDataset, default_neu_root
from service.data.severstal import SeverstalDataset

SPLITS = ("train", "val", "test", "all")
SEVERSTAL_VAL_FRACTION = 0.2
FIXED_SPLIT_SETS = {"neu": NeuSegDataset, "magnetic-tile": MagneticTileDataset}
DEFAULT_ROOTS = {"neu": default_neu_root, "magnetic-tile": default_magnetic_tile_root}


def parse_dataset_spec(spec: str) -> tuple[str, Path]:
    """``kind:path`` -> (kind, path); a bare path is Severstal-format, a bare ``neu`` or
    ``magnetic-tile`` the shared copy."""
    kind, sep, location = spec.partition(":")
    if not sep:
        if spec in DEFAULT_ROOTS:
            return spec, DEFAULT_ROOTS[spec]()
        return "severstal", Path(spec)
    if kind not in (*FIXED_SPLIT_SETS, "severstal"):
        raise ValueError(
            f"unknown dataset kind {kind!r}: use neu:PATH, magnetic-tile:PATH or severstal:PATH"
        )
    return kind, Path(location)


def open_dataset(spec: str, split: str) -> SegmentationDataset:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    kind, root = parse_dataset_spec(spec)
    if kind in FIXED_SPLIT_SETS:
        if split == "all":
            raise ValueError(f"{kind} has fixed splits: choose train, val or test")
        return FIXED_SPLIT_SETS[kind](root, split)
    if split == "all":
        return SeverstalDataset(root)
    if split == "test":
        raise ValueError(f"{root} is a Severstal-format folder: it has train and val splits only")
    train_ids, val_ids = split_image_ids(
        SeverstalDataset(root).image_ids, val_fraction=SEVERSTAL_VAL_FRACTION
    )
    return SeverstalDataset(root, image_ids=train_ids if split == "train" else val_ids)


def evaluation_split(spec: str) -> str:
    """The held-out split to report: test where the dataset has one, else val."""
    return "test" if parse_dataset_spec(spec)[0] in FIXED_SPLIT_SETS else "val"
