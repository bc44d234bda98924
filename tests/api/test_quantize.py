"""int8: a published float version quantized into a new version (lineage, precision, masks
checked against the parent's), served by the real app as a float one is; calibration on the
training split only; a version whose masks disagree is refused and nothing is published.

The source is the committed ``probe`` (a 1x1 conv whose class 3 fires on dark pixels, which
every validation strip of the synthetic set has): masks that are known and not empty, with no
torch needed. Its one conv is both stem and head, so it is quantized with nothing kept float.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

pytest.importorskip("onnxruntime.quantization")

from service.compression import quantize
from service.compression.quantize import (
    MaskCheckFailed,
    QuantizeSettings,
    quantize_version,
)
from service.store import ONNX_FILE, ModelStore

from .conftest import AppFactory
from .strips import RAW, plain_strip, post_strip

PROBE = "probe"
CALIBRATION = 5


def settings(synthetic_root: Path, **changes: Any) -> QuantizeSettings:
    values: dict[str, Any] = {
        "calibration_images": CALIBRATION,
        "keep_float": (),
        "min_mask_dice": 0.95,
        "dataset": str(synthetic_root),
        **changes,
    }
    return QuantizeSettings(**values)


@pytest.fixture(scope="module")
def quantized(
    model_store: ModelStore, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelStore, list[str], quantize.QuantizeReport]:
    """``probe`` v1 quantized into v2, recording the splits each data set was opened for."""
    store = ModelStore(shutil.copytree(model_store.root, tmp_path_factory.mktemp("q") / "s"))
    opened: list[str] = []
    original = quantize.open_dataset

    def recording(spec: str, split: str) -> Any:
        opened.append(split)
        return original(spec, split)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quantize, "open_dataset", recording)
        _, report = quantize_version(store, PROBE, 1, settings(synthetic_root), latency_repeats=2)
    return store, opened, report


def test_the_int8_version_is_published_with_lineage_precision_and_checked_masks(
    quantized: tuple[ModelStore, list[str], quantize.QuantizeReport],
) -> None:
    store, _, report = quantized
    child, parent = store.load(PROBE, 2), store.manifest(PROBE, 1)
    manifest = child.manifest
    assert (manifest.precision, parent.precision) == ("int8", "float32")
    assert (manifest.lineage.parent_version, manifest.lineage.method) == (1, "quantize")
    settings = manifest.lineage.settings
    assert settings["excluded_nodes"] == report.excluded_nodes
    assert report.excluded_nodes == []
    assert settings["calibration"]["images"] == CALIBRATION
    assert settings["format"] == "QDQ"
    assert set(manifest.files) == {ONNX_FILE}  # no weights: an int8 version is not pruned again
    assert manifest.metrics.mask_dice_vs_parent == report.mask_dice
    assert min(report.mask_dice.values()) >= 0.95
    assert manifest.metrics.dice_per_class["scratch"] < 1.0  # class 3's masks are not empty
    assert manifest.architecture == parent.architecture
    assert manifest.postprocess == parent.postprocess
    assert set(report.latency_ms) == {"float32", "int8"}
    assert store.aliases(PROBE)["candidate"] == 2
    graph = child.file(ONNX_FILE).read_bytes()
    assert b"QuantizeLinear" in graph and b"DequantizeLinear" in graph


def test_calibration_reads_the_training_split_only(
    quantized: tuple[ModelStore, list[str], quantize.QuantizeReport],
) -> None:
    _, opened, report = quantized
    assert opened[0] == "train"  # calibration
    assert "train" not in opened[1:]  # the mask check and the scores: validation, held out
    assert report.calibration == {
        "dataset": report.calibration["dataset"],
        "split": "train",
        "images": CALIBRATION,
        "seed": 0,
        "method": "minmax",
        "per_channel": True,
    }


@pytest.fixture(scope="module")
def client(
    running_app: AppFactory,
    quantized: tuple[ModelStore, list[str], quantize.QuantizeReport],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    store, _, _ = quantized
    folder = tmp_path_factory.mktemp("serve_int8")
    with running_app(f"sqlite:///{folder / 'int8.db'}", model_store=store.root) as client:
        yield client


def test_the_app_serves_the_int8_version_as_a_float_one(client: TestClient) -> None:
    float_answer = post_strip(client, plain_strip().tobytes(), RAW)
    assert float_answer.status_code == 200, float_answer.text
    promoted = client.post(f"/v1/admin/models/{PROBE}/aliases/production", json={"version": 2})
    assert promoted.status_code == 200, promoted.text
    answer = post_strip(client, plain_strip().tobytes(), RAW)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == {"name": PROBE, "version": 2}
    assert answer.json()["defects"] == float_answer.json()["defects"]
    versions = {
        v["version"]: v
        for model in client.get("/v1/models").json()["models"]
        if model["name"] == PROBE
        for v in model["versions"]
    }
    assert (versions[1]["precision"], versions[2]["precision"]) == ("float32", "int8")


def test_an_int8_graph_whose_masks_disagree_is_refused_and_nothing_published(
    model_store: ModelStore,
    synthetic_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calibrated on white images, the input's range leaves out the dark pixels that class 3
    fires on: its int8 masks are empty where the float ones are not."""
    store = ModelStore(shutil.copytree(model_store.root, tmp_path / "store"))
    original = quantize.prepare_batch

    def white(images: list[np.ndarray], spec: Any) -> np.ndarray:
        return original([np.full_like(image, 255) for image in images], spec)

    monkeypatch.setattr(quantize, "prepare_batch", white)
    with pytest.raises(MaskCheckFailed, match="not published"):
        quantize_version(store, PROBE, 1, settings(synthetic_root), latency_repeats=2)
    assert store.versions(PROBE) == [1]
    assert "candidate" not in store.aliases(PROBE)


def test_quantize_settings_refuse_unknown_choices() -> None:
    with pytest.raises(ValueError, match="calibration method 'histogram'"):
        QuantizeSettings(method="histogram")
    with pytest.raises(ValueError, match="unknown parts"):
        QuantizeSettings(keep_float=("decoder",))
