"""The presence head: its outputs, its loss, pruning that leaves its classes alone, and a gated
net trained, exported with a second ONNX output and published with parity on both outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from safetensors.torch import load, save  # noqa: E402

from service.compression.allocation import (  # noqa: E402
    Allocator,
    conv_widths,
    score_groups,
    search_level,
    search_macs,
)
from service.compression.importance import make_importance  # noqa: E402
from service.inference.outputs import split_prediction  # noqa: E402
from service.inference.runtime import OnnxSegmenter  # noqa: E402
from service.nets import Architecture, build_model, record_layer_shapes  # noqa: E402
from service.store import ModelStore  # noqa: E402
from service.training.losses import BceDiceLoss, SegmentationLoss, presence_targets  # noqa: E402
from service.training.publish import ONNX_FILE, publish_run  # noqa: E402
from service.training.train import train  # noqa: E402
from tests.tiny_models import tiny_train_config  # noqa: E402

GATED = Architecture("unet", "resnet18", 1, 4, 0.25, presence_head=True)


def test_a_gated_net_returns_logits_and_one_presence_logit_per_class() -> None:
    model = build_model(GATED).eval()
    with torch.no_grad():
        logits, presence = model(torch.randn(2, 1, 64, 128))
    assert logits.shape == (2, 4, 64, 128) and presence.shape == (2, 4)
    plain = build_model(Architecture("unet", "resnet18", 1, 4, 0.25)).eval()
    with torch.no_grad():
        logits, presence = split_prediction(plain(torch.randn(1, 1, 64, 64)))
    assert logits.shape == (1, 4, 64, 64) and presence is None


def test_presence_loss_learns_whether_the_crop_holds_each_class() -> None:
    masks = torch.zeros(2, 4, 8, 8)
    masks[0, 1, 2:4, 2:4] = 1
    assert presence_targets(masks).tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]
    logits = torch.full((2, 4, 8, 8), -5.0)
    right = torch.tensor([[-9.0, 9.0, -9.0, -9.0], [-9.0] * 4])
    loss = SegmentationLoss()
    assert loss(logits, right, masks) < loss(logits, -right, masks)
    assert loss(logits, None, masks) == pytest.approx(float(BceDiceLoss()(logits, masks)))


def test_pair_dice_scores_each_defect_and_leaves_empty_pairs_to_bce() -> None:
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, 0, :2, :2] = 1
    exact = torch.where(masks > 0, 20.0, -20.0)
    pairs = BceDiceLoss(reduction="pairs")
    assert float(pairs(exact, masks)) == pytest.approx(0.0, abs=1e-6)
    nothing = torch.full_like(masks, -20.0)
    assert float(pairs(nothing, torch.zeros_like(masks))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="unknown Dice reduction"):
        BceDiceLoss(reduction="image")


def test_pruning_keeps_the_presence_classes_and_the_record_rebuilds_the_net() -> None:
    torch.manual_seed(0)
    model = build_model(GATED).eval()
    groups = score_groups(model, make_importance("fpgm"), conv_widths(model), seed=0)
    pruned, _ = search_level(model, groups, Allocator("global", 8, 0.9), 0.5 * search_macs(model))
    assert pruned.presence.classifier.out_channels == 4
    deepest = pruned.encoder.out_channels[-1]
    assert pruned.presence.classifier.in_channels == deepest < model.encoder.out_channels[-1]
    record = json.dumps({**GATED.to_dict(), "layer_shapes": record_layer_shapes(pruned)})
    rebuilt = build_model(Architecture.from_dict(json.loads(record))).eval()
    rebuilt.load_state_dict(load(save(pruned.state_dict())), strict=True)
    image = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        for expected, actual in zip(pruned(image), rebuilt(image), strict=True):
            assert torch.allclose(expected, actual)


@pytest.mark.training
def test_a_gated_run_publishes_two_outputs_with_parity(
    synthetic_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny_train_config(synthetic_root, run, epochs=1, presence_head=True))
    manifest = publish_run(
        run, ModelStore(tmp_path / "store"), "gated", device="cpu", progress=False
    )
    assert manifest.architecture.presence_head is True
    metrics = manifest.metrics.model_dump()
    assert metrics["parity"]["max_abs_logit_diff"] < 1e-3
    assert metrics["parity"]["mask_agreement"] > 0.999
    if any(rule.gate is not None for rule in manifest.postprocess):
        assert set(metrics["without_gate"]) >= {"dice", "dice_nonempty"}
    session = OnnxSegmenter(ModelStore(tmp_path / "store").load("gated", 1).file(ONNX_FILE))
    assert session.gated
    logits, presence = session(np.zeros((3, 1, 256, 1600), dtype=np.float32))
    assert logits.shape == (3, 4, 256, 1600) and presence.shape == (3, 4)
