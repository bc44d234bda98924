"""Real Severstal strips: masks come back in the Severstal orientation (column-major RLE).

The probe model reports exactly the bright pixels as class 1, so a real strip with a reference
mask painted bright must come back with that reference RLE, pixel for pixel.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service import rle
from tests.tiny_models import BRIGHT, DARK, HEIGHT, WIDTH

from .conftest import AppFactory
from .strips import encode, post_strip

pytestmark = [pytest.mark.needs_shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def samples(shared_data: Path) -> Path:
    root = shared_data / "severstal-samples"
    if not (root / "images").is_dir():
        pytest.skip(f"no Severstal sample images in {root}")
    return root


def _class_1_references(samples: Path) -> list[tuple[Path, str]]:
    images = {path.stem: path for path in (samples / "images").iterdir()}
    with (samples / "gt_subset_train.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [
        (images[Path(row["ImageId"]).stem], row["EncodedPixels"])
        for row in rows
        if row["ClassId"] == "1" and Path(row["ImageId"]).stem in images
    ]


def test_reference_masks_come_back_exactly(client: TestClient, samples: Path) -> None:
    references = _class_1_references(samples)
    if not references:
        pytest.skip("no class-1 reference row has its image among the samples")
    for path, reference in references[:3]:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
        assert grey.shape == (HEIGHT, WIDTH)
        expected = rle.decode(reference, (HEIGHT, WIDTH))
        strip = np.clip(grey, DARK + 1, BRIGHT - 1).astype(np.uint8)
        strip[expected == 1] = 255
        response = post_strip(client, encode(strip, "PNG"), "image/png")
        assert response.status_code == 200, response.text
        (defect,) = response.json()["defects"]
        np.testing.assert_array_equal(rle.decode(defect["encoded_pixels"]), expected)
        assert defect["encoded_pixels"] == rle.encode(expected)
        assert defect["area_px"] == int(expected.sum())


def test_a_real_unet_serves_a_real_strip(
    running_app: AppFactory, sqlite_url: str, samples: Path
) -> None:
    path = sorted((samples / "images").iterdir())[0]
    with running_app(sqlite_url, model_name="unet-tiny") as client:
        response = post_strip(client, path.read_bytes(), "image/png")  # RGB PNG as shipped
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "unet-tiny", "version": 1}
    for defect in body["defects"]:
        mask = rle.decode(defect["encoded_pixels"], (HEIGHT, WIDTH))
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert int(mask.sum()) == defect["area_px"]
        assert defect["bbox"] == [columns[0], rows[0], columns[-1], rows[-1]]
        assert 0.5 < defect["score"] <= 1.0
