"""A tiny end-to-end run on synthetic strips: train lowers the loss, resume continues, publish
writes a version whose ONNX export matches torch and whose weights rebuild the net."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.evaluation.run import evaluate  # noqa: E402
from service.inference.runtime import OnnxSegmenter  # noqa: E402
from service.store import ModelStore  # noqa: E402
from service.training.publish import ONNX_FILE, load_version_model, publish_run  # noqa: E402
from service.training.train import train  # noqa: E402
from tests.tiny_models import tiny_train_config  # noqa: E402

EPOCHS = 3


@pytest.fixture(scope="module")
def trained_run(tiny_run: Callable[[int], Path]) -> Path:
    return tiny_run(EPOCHS)


def test_training_lowers_the_loss_and_writes_the_run(trained_run: Path) -> None:
    run = json.loads((trained_run / "run.json").read_text())
    losses = [epoch["train_loss"] for epoch in run["history"]]
    assert len(losses) == EPOCHS
    assert losses[-1] < losses[0]
    assert (trained_run / "best.safetensors").is_file()
    assert run["architecture"]["family"] == "unet"


def test_existing_run_needs_resume_and_resume_continues(
    trained_run: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_train_config(synthetic_root, run, epochs=EPOCHS + 1))
    result = train(tiny_train_config(synthetic_root, run, epochs=EPOCHS + 1, resume=True))
    assert [epoch["epoch"] for epoch in result.history] == list(range(1, EPOCHS + 2))


def test_a_run_can_start_from_earlier_weights(
    trained_run: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    from service.nets import Architecture, build_model
    from service.training.train import load_initial_weights

    weights = trained_run / "best.safetensors"
    config = tiny_train_config(synthetic_root, tmp_path / "run", epochs=1, init_weights=weights)
    result = train(config)
    first_epoch_loss = result.history[0]["train_loss"]
    scratch = json.loads((trained_run / "run.json").read_text())["history"][0]["train_loss"]
    assert first_epoch_loss < scratch  # it started where the earlier run ended, not at random
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["init_weights"] == str(weights)

    arch = Architecture.from_dict({**run["architecture"], "width_multiplier": 0.25})
    with pytest.raises(ValueError, match="does not fit this architecture"):
        load_initial_weights(build_model(arch), weights)
    with pytest.raises(FileNotFoundError):
        load_initial_weights(build_model(arch), tmp_path / "none.safetensors")


def test_publish_exports_onnx_with_parity_and_rebuilds(trained_run: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    manifest = publish_run(
        trained_run, store, "tiny", alias="production", device="cpu", progress=False
    )
    assert store.aliases("tiny") == {"production": manifest.version}
    metrics = manifest.metrics.model_dump()
    assert metrics["parity"]["max_abs_logit_diff"] < 1e-3
    assert metrics["parity"]["mask_agreement"] > 0.999
    assert metrics["params"] > 0 and metrics["macs"] > 0
    assert 0.0 <= metrics["dice"] <= 1.0
    assert [rule.class_id for rule in manifest.postprocess] == [1, 2, 3, 4]
    assert manifest.lineage.parent_version is None
    assert set(manifest.files) == {"model.onnx", "weights.safetensors"}

    model, _ = load_version_model(store, "tiny", "production")
    version = store.load("tiny", "production")
    session = OnnxSegmenter(version.file(ONNX_FILE))
    batch = np.random.default_rng(0).normal(size=(2, 1, 256, 1600)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    assert np.abs(session(batch) - expected).max() < 1e-3  # dynamic batch axis works


def test_onnx_evaluation_matches_the_manifest(
    trained_run: Path, tmp_path: Path, synthetic_root: Path
) -> None:
    from service.data.catalog import open_dataset

    store = ModelStore(tmp_path / "store")
    manifest = publish_run(trained_run, store, "tiny", device="cpu", progress=False)
    version = store.load("tiny", manifest.version)
    scores = evaluate(
        OnnxSegmenter(version.file(ONNX_FILE)),
        open_dataset(str(synthetic_root), "val"),
        manifest.input,
        manifest.postprocess,
        progress=False,
    )
    assert scores["dice"] == pytest.approx(manifest.metrics.dice, abs=1e-6)
