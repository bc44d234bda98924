"""Severstal steel-defect data: the competition's train.csv (either format) and image folder.

Image ids: the dataset uses the CSV's ImageId (e.g. "0002cc93b.jpg") for an image the CSV
names, else the image's file name. Files are matched to ids by stem, so "0002cc93b.jpg" in the
CSV finds images/0002cc93b.png (the shared samples are PNG re-saves of the competition JPEGs).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from service import rle
from service.data.base import DefectClass, Sample

# The competition never named its classes; they are known only by number.
SEVERSTAL_CLASSES: tuple[DefectClass, ...] = tuple(
    DefectClass(id=k, name=f"class_{k}") for k in range(1, 5)
)
CLASSES_FILE = "classes.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif")

_OLD_HEADER = ["ImageId_ClassId", "EncodedPixels"]
_NEW_HEADER = ["ImageId", "ClassId", "EncodedPixels"]

Rows = dict[str, dict[int, str]]


def read_train_csv(path: Path | str, num_classes: int = len(SEVERSTAL_CLASSES)) -> Rows:
    """Read a train.csv into image id -> {class id: RLE}, keeping non-empty masks only.

    Accepts both competition formats, told apart by the header: the old one
    (``ImageId_ClassId,EncodedPixels``, one row per image and class, empty masks included) and
    the new one (``ImageId,ClassId,EncodedPixels``, non-empty masks only). An image that appears
    only with empty masks is still returned, with ``{}``. RLE strings are syntax-checked here;
    whether they fit the image is checked when they are decoded at the image's shape.
    """
    path = Path(path)
    rows: Rows = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [field.strip() for field in next(reader, [])]
        if header not in (_OLD_HEADER, _NEW_HEADER):
            raise ValueError(
                f"{path}: unknown header {','.join(header)!r}; expected "
                f"{','.join(_NEW_HEADER)!r} or {','.join(_OLD_HEADER)!r}"
            )
        old_format = header == _OLD_HEADER
        for record in reader:
            if not record:
                continue
            where = f"{path}, line {reader.line_num}"
            if len(record) != len(header):
                raise ValueError(f"{where}: expected {len(header)} fields, got {len(record)}")
            if old_format:
                image_id, _, class_text = record[0].rpartition("_")
            else:
                image_id, class_text = record[0], record[1]
            if not image_id.strip():
                raise ValueError(f"{where}: missing image id in {record[0]!r}")
            class_id = _class_id(class_text, num_classes, where)
            encoded = record[-1].strip()
            try:
                rle.parse(encoded)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            masks = rows.setdefault(image_id, {})
            if class_id in masks:
                raise ValueError(f"{where}: second mask for {image_id} class {class_id}")
            if encoded:
                masks[class_id] = encoded
    return rows


def _class_id(text: str, num_classes: int, where: str) -> int:
    try:
        class_id = int(text)
    except ValueError:
        raise ValueError(f"{where}: class id {text!r} is not an integer") from None
    if not 1 <= class_id <= num_classes:
        raise ValueError(f"{where}: class id {class_id} is outside 1..{num_classes}")
    return class_id


def write_train_csv(path: Path | str, rows: Rows) -> None:
    """Write rows in the new format, sorted by image then class, non-empty masks only."""
    images = (
        (image_id, {class_id: encoded for class_id, encoded in masks.items() if encoded})
        for image_id, masks in sorted(rows.items())
    )
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        handle.writelines(masks_csv(images))


def masks_csv(images: Iterable[tuple[str, Mapping[int, str]]]) -> Iterator[str]:
    """Masks as the new format's text: the header, then one chunk per image (its rows in class
    order), so that a long CSV can be streamed. Every mask given is written, empty ones too:
    a train.csv leaves them out, a submission lists every class of every image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_NEW_HEADER)
    for image_id, masks in images:
        for class_id, encoded in sorted(masks.items()):
            writer.writerow([image_id, class_id, encoded])
        yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def read_classes(root: Path) -> tuple[DefectClass, ...]:
    """The dataset's ``classes.json`` (``[{"id": 1, "name": ...}, ...]``) if it has one, else
    Severstal's four numbered classes."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return SEVERSTAL_CLASSES
    return tuple(
        DefectClass(id=int(c["id"]), name=str(c["name"])) for c in json.loads(path.read_text())
    )


def write_classes(root: Path, classes: tuple[DefectClass, ...]) -> None:
    payload = [{"id": c.id, "name": c.name} for c in classes]
    (Path(root) / CLASSES_FILE).write_text(json.dumps(payload, indent=2) + "\n")


class SeverstalDataset:
    """Images of ``root/images_dir`` with masks from ``root/csv_name``.

    Without ``image_ids`` every image in the folder is used, and an image without CSV rows counts
    as defect-free (the new format lists defect-free images nowhere). Use ``image_ids`` when the
    folder holds images the CSV does not label.
    """

    def __init__(
        self,
        root: Path,
        image_ids: list[str] | None = None,
        csv_name: str = "train.csv",
        images_dir: str = "train_images",
        classes: tuple[DefectClass, ...] | None = None,
    ) -> None:
        root = Path(root)
        csv_path, image_dir = root / csv_name, root / images_dir
        for needed, what in (
            (root, "dataset root"),
            (csv_path, "mask CSV"),
            (image_dir, "image folder"),
        ):
            if not needed.exists():
                raise FileNotFoundError(f"Severstal {what} {needed} does not exist")
        self.root = root
        self.classes = classes or read_classes(root)
        rows = read_train_csv(csv_path, num_classes=len(self.classes))
        self._rows_by_stem = _by_stem(rows, csv_path)
        self._files_by_stem = _image_files(image_dir)
        if image_ids is None:
            csv_ids = {Path(image_id).stem: image_id for image_id in rows}
            image_ids = [csv_ids.get(stem, path.name) for stem, path in self._files_by_stem.items()]
        else:
            missing = [i for i in image_ids if Path(i).stem not in self._files_by_stem]
            if missing:
                raise FileNotFoundError(f"no image in {image_dir} for ids {sorted(missing)}")
        self.image_ids = sorted(image_ids)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        stem = Path(image_id).stem
        with Image.open(self._files_by_stem[stem]) as file:
            image = np.asarray(file.convert("L"), dtype=np.uint8)
        masks = np.zeros((len(self.classes), *image.shape), dtype=np.uint8)
        for class_id, encoded in self._rows_by_stem.get(stem, {}).items():
            try:
                masks[class_id - 1] = rle.decode(encoded, image.shape)
            except ValueError as error:
                raise ValueError(f"{image_id} class {class_id}: {error}") from None
        return Sample(image_id=image_id, image=image, masks=masks)


def _by_stem(rows: Rows, csv_path: Path) -> Rows:
    by_stem: Rows = {}
    for image_id, masks in rows.items():
        stem = Path(image_id).stem
        if stem in by_stem:
            raise ValueError(f"{csv_path}: two image ids with the stem {stem!r}")
        by_stem[stem] = masks
    return by_stem


def _image_files(image_dir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in files:
            raise ValueError(f"{image_dir}: {files[path.stem].name} and {path.name} share a stem")
        files[path.stem] = path
    return files
