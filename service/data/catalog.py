"""Datasets by name: ``neu`` / ``neu:PATH`` (NEU-Seg) or ``severstal:PATH`` / a bare PATH
(a Severstal-format folder with train.csv and train_images/, e.g. synthetic strips).

Severstal-format folders have no test split: train and val come from a deterministic split
by image id (20% val); ``all`` is every image (for a folder held out as a whole, e.g. synthetic
strips made with another seed).
"""

from __future__ import annotations

from pathlib import Path

from service.data.base import SegmentationDataset, split_image_ids
from service.data.neu import NeuSegDataset, default_neu_root
from service.data.severstal import SeverstalDataset

SPLITS = ("train", "val", "test", "all")
SEVERSTAL_VAL_FRACTION = 0.2


def parse_dataset_spec(spec: str) -> tuple[str, Path]:
    """``kind:path`` -> (kind, path); a bare path is Severstal-format, bare ``neu`` the default."""
    kind, sep, location = spec.partition(":")
    if not sep:
        if spec == "neu":
            return "neu", default_neu_root()
        return "severstal", Path(spec)
    if kind not in ("neu", "severstal"):
        raise ValueError(f"unknown dataset kind {kind!r}: use neu:PATH or severstal:PATH")
    return kind, Path(location)


def open_dataset(spec: str, split: str) -> SegmentationDataset:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    kind, root = parse_dataset_spec(spec)
    if kind == "neu":
        if split == "all":
            raise ValueError("NEU-Seg has fixed splits: choose train, val or test")
        return NeuSegDataset(root, split)
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
    return "test" if parse_dataset_spec(spec)[0] == "neu" else "val"
