import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.data import SeverstalDataset, read_train_csv, split_image_ids, write_train_csv
from service.rle import encode

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal-samples"
# The images of the samples folder whose ground truth is complete (data README): the four with
# masks in gt_subset_train.csv and three with no defect at all.
FULL_GT_IDS = [
    "000789191.jpg",
    "002e73b3c.jpg",
    "002fc4e19.jpg",
    "0030401a5.jpg",
    "0046839bd.jpg",
    "005b92582.jpg",
    "005f19695.jpg",
]


@pytest.fixture
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"real Severstal samples not found: {SAMPLES} is missing")
    return SAMPLES


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.needs_shared
def test_old_and_new_formats_parse_alike(samples: Path, tmp_path: Path) -> None:
    new = read_train_csv(samples / "gt_subset_train.csv")
    assert sorted(new) == ["002fc4e19.jpg", "0030401a5.jpg", "0046839bd.jpg", "005f19695.jpg"]
    assert sorted(new["002fc4e19.jpg"]) == [1, 2]
    lines = ["ImageId_ClassId,EncodedPixels"]
    for image_id, masks in new.items():
        lines += [f"{image_id}_{k},{masks.get(k, '')}" for k in range(1, 5)]
    old = read_train_csv(_write(tmp_path / "old.csv", "\n".join(lines) + "\n"))
    assert old == new


def test_old_format_keeps_defect_free_images(tmp_path: Path) -> None:
    text = "ImageId_ClassId,EncodedPixels\n" + "".join(f"a.jpg_{k},\n" for k in range(1, 5))
    text += "b.jpg_1,\nb.jpg_2,\nb.jpg_3,5 3\nb.jpg_4,\n"
    assert read_train_csv(_write(tmp_path / "t.csv", text)) == {"a.jpg": {}, "b.jpg": {3: "5 3"}}


def test_write_then_read(tmp_path: Path) -> None:
    rows = {"b.jpg": {4: "1 2", 1: "7 1"}, "a.jpg": {2: "3 3", 3: ""}, "c.jpg": {}}
    path = tmp_path / "train.csv"
    write_train_csv(path, rows)
    assert path.read_text().splitlines() == [
        "ImageId,ClassId,EncodedPixels",
        "a.jpg,2,3 3",
        "b.jpg,1,7 1",
        "b.jpg,4,1 2",
    ]
    assert read_train_csv(path) == {"a.jpg": {2: "3 3"}, "b.jpg": {1: "7 1", 4: "1 2"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Image,Class,Pixels\n", "unknown header"),
        ("", "unknown header"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,5,1 2\n", "line 2: class id 5 is outside 1..4"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,0,1 2\n", "class id 0 is outside"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,x,1 2\n", "class id 'x' is not an integer"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\na.jpg,1,9 2\n", "line 3: second mask"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,2,1 x\n", "line 3: RLE token 'x'"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2 3\n", "line 2: RLE has an odd number"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1\n", "line 2: expected 3 fields"),
        ("ImageId_ClassId,EncodedPixels\na.jpg,1 2\n", "line 2: missing image id"),
        ("ImageId_ClassId,EncodedPixels\na.jpg_7,1 2\n", "line 2: class id 7"),
    ],
)
def test_malformed_csv(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_train_csv(_write(tmp_path / "bad.csv", text))


@pytest.mark.needs_shared
def test_real_samples_load(samples: Path) -> None:
    dataset = SeverstalDataset(
        samples, image_ids=FULL_GT_IDS, csv_name="gt_subset_train.csv", images_dir="images"
    )
    assert len(dataset) == 7 and dataset.image_ids == FULL_GT_IDS
    with (samples / "image_labels_20.csv").open(newline="") as handle:
        labels = {row["ImageId"]: row for row in csv.DictReader(handle)}
    with (samples / "gt_subset_train.csv").open(newline="") as handle:
        gt = {(r["ImageId"], int(r["ClassId"])): r["EncodedPixels"] for r in csv.DictReader(handle)}
    for index, image_id in enumerate(dataset.image_ids):
        sample = dataset[index]
        assert sample.image_id == image_id
        assert sample.image.shape == (256, 1600) and sample.image.dtype == np.uint8
        assert sample.masks.shape == (4, 256, 1600) and sample.masks.dtype == np.uint8
        present = [int(labels[image_id][f"has_c{k}"]) for k in range(1, 5)]
        assert [int(m.any()) for m in sample.masks] == present
        for k in range(1, 5):
            assert encode(sample.masks[k - 1]) == gt.get((image_id, k), "")
    assert encode(dataset[2].masks[0]) == gt[("002fc4e19.jpg", 1)]


def _tiny_dataset(tmp_path: Path, csv_text: str) -> Path:
    images = tmp_path / "train_images"
    images.mkdir()
    for name in ("a.png", "b.jpg", "c.png"):
        Image.fromarray(np.full((4, 3, 3), 50, dtype=np.uint8)).save(images / name)
    (images / "notes.txt").write_text("not an image")
    _write(tmp_path / "train.csv", csv_text)
    return tmp_path


def test_ids_and_masks_from_folder(tmp_path: Path) -> None:
    root = _tiny_dataset(tmp_path, "ImageId,ClassId,EncodedPixels\na.jpg,2,2 2 5 2 12 1\n")
    dataset = SeverstalDataset(root)
    # CSV form for the image the CSV names, the file name for the others.
    assert dataset.image_ids == ["a.jpg", "b.jpg", "c.png"]
    sample = dataset[0]
    assert sample.image.shape == (4, 3) and (sample.image == 50).all()
    assert sample.masks.shape == (4, 4, 3)
    assert encode(sample.masks[1]) == "2 2 5 2 12 1"
    assert sample.masks.sum() == 5
    assert not dataset[2].masks.any()


def test_requested_ids_match_by_stem(tmp_path: Path) -> None:
    root = _tiny_dataset(tmp_path, "ImageId,ClassId,EncodedPixels\n")
    assert SeverstalDataset(root, image_ids=["c.jpg", "a.png"]).image_ids == ["a.png", "c.jpg"]
    with pytest.raises(FileNotFoundError, match=r"\['z.jpg'\]"):
        SeverstalDataset(root, image_ids=["a.jpg", "z.jpg"])


def test_run_past_image_end(tmp_path: Path) -> None:
    root = _tiny_dataset(tmp_path, "ImageId,ClassId,EncodedPixels\nb.jpg,1,10 5\n")
    with pytest.raises(ValueError, match=r"b\.jpg class 1: .*past the last pixel 12"):
        SeverstalDataset(root)[1]


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset root"):
        SeverstalDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"mask CSV .*train\.csv"):
        SeverstalDataset(tmp_path)
    _write(tmp_path / "train.csv", "ImageId,ClassId,EncodedPixels\n")
    with pytest.raises(FileNotFoundError, match=r"image folder .*train_images"):
        SeverstalDataset(tmp_path)


def test_split_is_deterministic_and_order_independent() -> None:
    ids = [f"{i:06x}.jpg" for i in range(2000)]
    train, val = split_image_ids(ids)
    assert split_image_ids(list(reversed(ids))) == (train, val)
    assert train == sorted(train) and val == sorted(val)
    assert sorted(train + val) == sorted(ids)
    assert 0.17 < len(val) / len(ids) < 0.23
    # An id's side does not depend on the other ids.
    assert split_image_ids(ids[:500])[1] == [i for i in val if i in set(ids[:500])]
    assert split_image_ids(ids, seed=1) != (train, val)
    assert split_image_ids(ids, val_fraction=0.0) == (sorted(ids), [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_image_ids(ids, val_fraction=1.5)
