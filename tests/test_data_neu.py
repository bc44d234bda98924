from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.data import NEU_CLASSES, NeuSegDataset, default_neu_root

NEU_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "neu-seg"


@pytest.fixture
def root() -> Path:
    if not NEU_ROOT.is_dir():
        pytest.skip(f"NEU-Seg data not found: {NEU_ROOT} is missing")
    return NEU_ROOT


def test_default_root_is_beside_the_repository() -> None:
    assert default_neu_root() == NEU_ROOT


@pytest.mark.needs_shared
def test_split_sizes(root: Path) -> None:
    sizes = {split: len(NeuSegDataset(root, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 3128, "val": 892, "test": 446}
    train, val = NeuSegDataset(root, "train"), NeuSegDataset(root, "val")
    assert not set(train.image_ids) & set(val.image_ids)


@pytest.mark.needs_shared
def test_sample_masks_match_class_index(root: Path) -> None:
    dataset = NeuSegDataset(root, "val")
    assert dataset.classes == NEU_CLASSES
    assert [c.name for c in dataset.classes] == ["inclusion", "patches", "scratches"]
    seen = np.zeros(3, dtype=bool)
    for index in range(0, len(dataset), 60):
        sample = dataset[index]
        assert sample.image_id == dataset.image_ids[index]
        assert sample.image.shape == (200, 200) and sample.image.dtype == np.uint8
        assert sample.masks.shape == (3, 200, 200) and sample.masks.dtype == np.uint8
        assert set(np.unique(sample.masks)) <= {0, 1}
        index_mask = np.asarray(Image.open(root / "masks" / f"{sample.image_id}.png"))
        expected = sum((k + 1) * sample.masks[k].astype(np.int64) for k in range(3))
        np.testing.assert_array_equal(expected, index_mask)
        assert sample.masks.sum(axis=0).max() <= 1
        assert sample.masks.any()  # every NEU-Seg image has a defect
        seen |= sample.masks.any(axis=(1, 2))
    assert seen.all()


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown NEU-Seg split 'validation'"):
        NeuSegDataset(tmp_path, "validation")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shared/data/neu-seg"):
        NeuSegDataset(tmp_path / "nowhere", "train")
