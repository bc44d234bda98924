"""What every segmentation data source provides, and the train/validation split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class DefectClass:
    """A defect class; ids are 1..C and mask channel k holds class id k + 1."""

    id: int
    name: str


@dataclass
class Sample:
    """One image with its per-class masks."""

    image_id: str
    image: np.ndarray  # uint8 (H, W), grey
    masks: np.ndarray  # uint8 (C, H, W), 0/1; channel k is class id k + 1


class SegmentationDataset(Protocol):
    classes: tuple[DefectClass, ...]
    image_ids: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def split_image_ids(
    image_ids: Iterable[str], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split ids into sorted (train, val) lists.

    Each id's side depends only on (seed, id), through a hash, never on the order or on the other
    ids: adding images to a dataset never moves an existing image across the split, so a model's
    validation images stay unseen.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be within [0, 1], got {val_fraction}")
    train: list[str] = []
    val: list[str] = []
    for image_id in sorted(set(image_ids)):
        digest = hashlib.sha1(f"{seed}:{image_id}".encode()).digest()
        position = int.from_bytes(digest[:8], "big") / 2**64
        (val if position < val_fraction else train).append(image_id)
    return train, val
