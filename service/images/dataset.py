"""A reviewed set as a Severstal-format training dataset, streamed as a tar archive:
``train.csv`` (ImageId,ClassId,EncodedPixels; non-empty masks only), ``classes.json`` and
``train_images/`` with the kept strips, one at a time (constant memory)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from service.data.severstal import masks_csv
from service.images.archive import KeptImage
from service.inference.decode import RAW_MEDIA_TYPE, decode_strip


@dataclass(frozen=True)
class TrainingImage:
    stem: str
    image: KeptImage
    shape: tuple[int, int]
    masks: Mapping[int, str]
    """Class id -> RLE of the corrected masks."""

    @property
    def file_name(self) -> str:
        suffix = ".png" if self.image.content_type == RAW_MEDIA_TYPE else self.image.path.suffix
        return self.stem + suffix

    def file_bytes(self) -> bytes:
        """The kept file; a raw grey buffer is written as PNG, which the reader opens."""
        data = self.image.read()
        if self.image.content_type != RAW_MEDIA_TYPE:
            return data
        pixels = decode_strip(data, RAW_MEDIA_TYPE, height=self.shape[0], width=self.shape[1])
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        return buffer.getvalue()


class _Sink(io.RawIOBase):
    """Collects what tarfile writes, handed out chunk by chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


def training_tar(images: Sequence[TrainingImage], classes: Mapping[int, str]) -> Iterator[bytes]:
    sink = _Sink()
    with tarfile.open(fileobj=sink, mode="w|") as tar:
        _add(tar, "train.csv", _train_csv(images))
        listed = [{"id": k, "name": n} for k, n in sorted(classes.items())]
        _add(tar, "classes.json", json.dumps(listed, indent=2).encode() + b"\n")
        yield sink.drain()
        for item in images:
            _add(tar, f"train_images/{item.file_name}", item.file_bytes())
            yield sink.drain()
    yield sink.drain()


def _train_csv(images: Sequence[TrainingImage]) -> bytes:
    return "".join(masks_csv((item.file_name, item.masks) for item in images)).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))
