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


@pytest.mark.torch
def test_the_exported_head_upsamples_outside_the_blocked_layout_with_torchs_values(
    tmp_path: Path,
) -> None:
    """Its bilinear resize is exported as ``pytorch_half_pixel`` (kept out of ONNX Runtime's
    padded NCHWc layout), which gives torch's ``align_corners=False`` values."""
    import onnx
    import torch

    from service.nets import Architecture, build_model
    from service.store.manifest import InputSpec
    from service.training.export import export_onnx

    torch.manual_seed(0)
    model = build_model(Architecture("unet", "resnet18", 1, 4, 0.25, head_stride=4)).eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, InputSpec(height=64, width=96, channels=1), path)
    modes = {
        onnx.helper.get_attribute_value(a)
        for node in onnx.load(str(path)).graph.node
        if node.op_type == "Resize"
        for a in node.attribute
        if a.name == "coordinate_transformation_mode"
    }
    assert b"pytorch_half_pixel" in modes
    assert b"half_pixel" not in modes
    image = np.random.default_rng(0).random((1, 1, 96, 160), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(OnnxSegmenter(path)(image), expected, atol=1e-4)
