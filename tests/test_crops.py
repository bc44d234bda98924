"""Training crops: the defect share of an epoch's samples, reproducible per (seed, epoch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.data.base import DefectClass, Sample  # noqa: E402
from service.store.manifest import Normalisation  # noqa: E402
from service.training.crops import TrainingCrops  # noqa: E402


@dataclass
class _Images:
    """``defective`` of ``total`` 32x32 images hold a defect; reads are counted."""

    total: int
    defective: int
    classes: tuple[DefectClass, ...] = (DefectClass(1, "scratch"),)
    reads: list[int] = field(default_factory=list)

    @property
    def image_ids(self) -> list[str]:
        return [str(i) for i in range(self.total)]

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: int) -> Sample:
        self.reads.append(index)
        masks = np.zeros((1, 32, 32), dtype=np.uint8)
        if index < self.defective:
            masks[0, 10:14, 10:14] = 1
        return Sample(str(index), np.full((32, 32), index, dtype=np.uint8), masks)


def _crops(images: _Images, share: float) -> TrainingCrops:
    return TrainingCrops(images, (32, 32), 1, Normalisation(), seed=3, defect_share=share)


def test_a_defect_share_draws_defect_images_to_that_share_and_keeps_every_one() -> None:
    images = _Images(total=100, defective=20)
    crops = _crops(images, 0.5)
    crops.set_epoch(1)
    assert len(crops) == 100
    defective = crops.order < 20
    assert defective.sum() == 50
    assert set(crops.order[defective]) == set(range(20))
    clean = crops.order[~defective]
    assert len(set(clean)) == 50
    _, masks = crops[int(np.flatnonzero(defective)[0])]
    assert masks.sum() > 0


def test_the_order_is_fixed_by_seed_and_epoch_and_changes_between_epochs() -> None:
    first, again = _crops(_Images(100, 20), 0.5), _crops(_Images(100, 20), 0.5)
    first.set_epoch(2)
    again.set_epoch(2)
    np.testing.assert_array_equal(first.order, again.order)
    again.set_epoch(3)
    assert not np.array_equal(first.order, again.order)


def test_no_share_or_a_share_already_met_keeps_one_sample_per_image_without_reading_masks() -> None:
    images = _Images(total=10, defective=2)
    crops = _crops(images, 0.0)
    crops.set_epoch(1)
    np.testing.assert_array_equal(crops.order, np.arange(10))
    assert images.reads == []
    mostly_defective = _crops(_Images(total=10, defective=8), 0.5)
    mostly_defective.set_epoch(1)
    np.testing.assert_array_equal(mostly_defective.order, np.arange(10))


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="defect_share"):
        _crops(_Images(10, 2), 1.0)
