"""``evaluate-real`` on two real strips: its figures are those of the strips posted through
the real app, served by the same version."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service import rle
from service.cli import main
from service.evaluation.real import off_steel_mask
from service.store import ModelStore
from tests.tiny_models import GATED_PROBE, publish_gated_probe

from .conftest import AppFactory
from .strips import post_strip

pytestmark = [pytest.mark.needs_shared, pytest.mark.slow]

# One strip with pits and an edge crack and a black margin (complete ground truth), one clean.
STRIPS = ("002fc4e19", "000789191")


@pytest.fixture(scope="module")
def two_strips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two strips as a samples folder of their own, with their rows of every table."""
    source = shared_data / "severstal-samples"
    if not (source / "images").is_dir():
        pytest.skip(f"no Severstal sample images in {source}")
    target = tmp_path_factory.mktemp("samples")
    (target / "images").mkdir()
    for stem in STRIPS:
        shutil.copy(source / "images" / f"{stem}.png", target / "images")
    for table in ("image_labels_20.csv", "gt_status.csv", "gt_train.csv"):
        with (source / table).open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [row for row in reader if Path(row["ImageId"]).stem in STRIPS]
            fields = reader.fieldnames
        with (target / table).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            writer.writerows(rows)
    return target


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """gated-probe v1 gated on class 3 (the dark margins fire its pixels), alias production."""
    store = ModelStore(tmp_path_factory.mktemp("store"))
    version = publish_gated_probe(store, {3: 0.5}, tmp_path_factory.mktemp("files"))
    store.set_alias(GATED_PROBE, "production", version)
    return store


def _evaluate_real(store: ModelStore, samples: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    argv = ["evaluate-real", "--store", str(store.root), "--model", GATED_PROBE]
    assert main([*argv, "--samples", str(samples), "--per-strip", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_figures_are_those_of_the_strips_posted_through_the_app(
    running_app: AppFactory,
    sqlite_url: str,
    store: ModelStore,
    two_strips: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = _evaluate_real(store, two_strips, capsys)
    assert report["version"] == 1 and set(report["results"]) == {"served", "without_gate"}
    served, open_gate = report["results"]["served"], report["results"]["without_gate"]
    assert (served["strips"], served["clean_pairs"], served["defect_pairs"]) == (2, 6, 2)
    assert served["complete_strips"] == 2
    # Predicting nothing: both clean strips' 4 pairs and the defect strip's 2 clean pairs score 1.
    assert served["dice_empty_prediction"] == pytest.approx(6 / 8)

    posted = {}
    with running_app(sqlite_url, model_store=store.root, model_name=GATED_PROBE) as client:
        for stem in STRIPS:
            body = (two_strips / "images" / f"{stem}.png").read_bytes()
            response = post_strip(client, body, "image/png")
            assert response.status_code == 200, response.text
            posted[f"{stem}.jpg"] = response.json()["defects"]
    flagged = off_steel = 0
    for strip in served["per_strip"]:
        defects = posted[strip["image_id"]]
        assert strip["found"] == {str(d["class_id"]): d["area_px"] for d in defects}
        with Image.open(two_strips / "images" / f"{Path(strip['image_id']).stem}.png") as image:
            margins = off_steel_mask(np.asarray(image.convert("L")))
        for defect in defects:
            mask = rle.decode(defect["encoded_pixels"]).astype(bool)
            flagged += int(mask.sum())
            off_steel += int((mask & margins).sum())
    assert (served["flagged_px"], served["off_steel_flagged_px"]) == (flagged, off_steel)

    # With the gate open, class 3 fires on the black margin of 002fc4e19: off steel entirely.
    margin_strip = next(s for s in open_gate["per_strip"] if s["image_id"] == "002fc4e19.jpg")
    assert "3" in margin_strip["found"] and margin_strip["off_steel_px"] > 0
    assert open_gate["off_steel_flagged_px"] > served["off_steel_flagged_px"]
    assert all("3" not in s["found"] for s in served["per_strip"])


def test_missing_samples_say_where_they_were_looked_for(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate-real", "--store", str(store.root), "--model", GATED_PROBE]
    assert main([*argv, "--samples", str(tmp_path / "nowhere")]) == 2
    assert "no real Severstal strips at" in capsys.readouterr().err
