"""The magnetic-tile reader: splits, one class channel per image, anti-aliased masks, errors."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.data.catalog import evaluation_split, open_dataset, parse_dataset_spec
from service.data.magnetic_tile import (
    MAGNETIC_TILE_CLASSES,
    MagneticTileDataset,
    default_magnetic_tile_root,
    is_magnetic_tile_folder,
)
from service.jobs.request import dataset_spec

MT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic-tile"
HEADER = "stem,split,defect_class,image,mask,width,height"


def tiny_tiles(root: Path) -> Path:
    """A crack (anti-aliased edge), a defect-free tile and a blowhole, in the set's layout."""
    rows = [HEADER]
    for stem, split, folder in (
        ("a", "train", "Crack"),
        ("b", "train", "Free"),
        ("c", "test", "Blowhole"),
    ):
        images = root / f"MT_{folder}" / "Imgs"
        images.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 30), 100, np.uint8)).save(images / f"{stem}.jpg")
        mask = np.zeros((40, 30), np.uint8)
        if folder != "Free":
            mask[10:20, 5:15] = 255
            mask[20, 5:15] = 100  # an anti-aliased edge: below the level, not defect
        Image.fromarray(mask).save(images / f"{stem}.png")
        rows.append(f"{stem},{split},{folder},MT_{folder}/Imgs/{stem}.jpg,"
                    f"MT_{folder}/Imgs/{stem}.png,30,40")  # fmt: skip
    (root / "MT_Free").mkdir(exist_ok=True)
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_each_image_marks_only_its_folder_class(tmp_path: Path) -> None:
    root = tiny_tiles(tmp_path / "tiles")
    train = MagneticTileDataset(root, "train")
    assert train.classes == MAGNETIC_TILE_CLASSES
    assert train.image_ids == ["a", "b"]
    crack, free = train[0], train[1]
    assert crack.masks.shape == (5, 40, 30) and crack.masks.dtype == np.uint8
    assert crack.masks.sum(axis=(1, 2)).tolist() == [0, 0, 100, 0, 0]
    assert not free.masks.any()
    assert MagneticTileDataset(root, "test")[0].masks[0].sum() == 100


def test_the_catalog_and_the_job_api_know_the_set(tmp_path: Path) -> None:
    root = tiny_tiles(tmp_path / "tiles")
    assert is_magnetic_tile_folder(root)
    assert parse_dataset_spec(f"magnetic-tile:{root}") == ("magnetic-tile", root)
    assert parse_dataset_spec("magnetic-tile") == ("magnetic-tile", default_magnetic_tile_root())
    assert len(open_dataset(f"magnetic-tile:{root}", "train")) == 2
    assert evaluation_split(f"magnetic-tile:{root}") == "test"
    assert dataset_spec("tiles", tmp_path) == f"magnetic-tile:{root.resolve()}"
    with pytest.raises(ValueError, match="fixed splits"):
        open_dataset(f"magnetic-tile:{root}", "all")


def test_bad_folders_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shared/data/magnetic-tile"):
        MagneticTileDataset(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="unknown magnetic-tile split"):
        MagneticTileDataset(tmp_path, "validation")
    root = tiny_tiles(tmp_path / "tiles")
    manifest = root / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("Crack", "Rust", 1))
    with pytest.raises(ValueError, match="unknown defect class 'Rust'"):
        MagneticTileDataset(root, "train")
    manifest.write_text("stem,split\na,train\n")
    with pytest.raises(ValueError, match="missing columns"):
        MagneticTileDataset(root, "train")


@pytest.mark.needs_shared
def test_the_shared_copy_has_its_documented_splits() -> None:
    if not MT_ROOT.is_dir():
        pytest.skip(f"magnetic-tile data not found: {MT_ROOT} is missing")
    sizes = {s: len(MagneticTileDataset(MT_ROOT, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 939, "val": 203, "test": 202}
    test = MagneticTileDataset(MT_ROOT, "test")
    with_defect = {test.image_ids[i] for i in range(len(test)) if test[i].masks.any()}
    with (MT_ROOT / "manifest.csv").open() as handle:
        listed = {
            row["stem"]
            for row in csv.DictReader(handle)
            if row["split"] == "test" and int(row["defect_pixels_gt127"]) > 0
        }
    assert with_defect == listed  # what the manifest counts above the level, nothing else
    assert len(with_defect) == 58
