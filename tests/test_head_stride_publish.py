"""A U-Net whose head classifies at /2 trains, exports (the upsampling inside the ONNX graph)
and publishes with parity, and its manifest records the stride it is rebuilt with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from service.inference.runtime import OnnxSegmenter
from service.store import ModelStore
from service.training.publish import ONNX_FILE, load_version_model, publish_run
from service.training.train import train
from tests.tiny_models import tiny_train_config


@pytest.mark.training
def test_a_half_resolution_head_publishes_full_size_logits_with_parity(
    synthetic_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny_train_config(synthetic_root, run, epochs=1, head_stride=2))
    store = ModelStore(tmp_path / "store")
    manifest = publish_run(run, store, "coarse", device="cpu", progress=False)
    assert manifest.architecture.head_stride == 2
    metrics = manifest.metrics.model_dump()
    assert metrics["parity"]["max_abs_logit_diff"] < 1e-3
    assert metrics["parity"]["mask_agreement"] > 0.999
    model, _ = load_version_model(store, "coarse", 1)
    assert len(model.decoder.blocks) == 4
    logits = OnnxSegmenter(store.load("coarse", 1).file(ONNX_FILE))(
        np.zeros((2, 1, 256, 1600), dtype=np.float32)
    )
    assert logits.shape == (2, 4, 256, 1600)
