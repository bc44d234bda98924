"""EfficientNet-Lite encoders downstream: pruned (depthwise convs with the convs that feed and
read them), rebuilt from their record, exported to ONNX with parity."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

from service.compression.allocation import (  # noqa: E402
    Allocator,
    conv_widths,
    prune_to_level,
    score_groups,
    search_macs,
)
from service.compression.importance import make_importance  # noqa: E402
from service.inference.runtime import OnnxSegmenter  # noqa: E402
from service.nets import Architecture, build_model, record_layer_shapes  # noqa: E402
from service.nets.efficientnet import EfficientNetLiteEncoder  # noqa: E402
from service.store import ClassPostprocess, InputSpec  # noqa: E402
from service.training.export import check_parity, export_onnx  # noqa: E402
from service.training.predict import torch_predictor  # noqa: E402

LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SPEC = InputSpec(height=64, width=96, channels=1)


def lite_arch(encoder: str) -> Architecture:
    return Architecture("unet", encoder, 1, 3, 0.25, head_stride=4)


def randomise_norms(model: nn.Module) -> None:
    """Norms away from the identity, so that pruning the wrong channel shows in the output."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)


@cache
def pruned(encoder: str, allocation: str, round_to: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = build_model(lite_arch(encoder)).eval()
    randomise_norms(model)
    groups = score_groups(model, make_importance("fpgm"), conv_widths(model), seed=0)
    return model, prune_to_level(model, groups, Allocator(allocation, round_to, 0.9), 0.6)


@pytest.mark.parametrize("encoder", LITE)
def test_the_features_come_at_strides_2_to_32(encoder: str) -> None:
    net = build_model(lite_arch(encoder)).encoder
    assert isinstance(net, EfficientNetLiteEncoder)
    features = net(torch.zeros(1, 1, 64, 96))
    assert [f.shape[-2:] for f in features] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
    assert [f.shape[1] for f in features] == net.out_channels


@pytest.mark.parametrize("encoder", LITE)
@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("round_to", [8, 16])
def test_each_lite_encoder_prunes_to_round_widths_and_its_depthwise_convs_follow(
    encoder: str, allocation: str, round_to: int
) -> None:
    source, result = pruned(encoder, allocation, round_to)
    assert search_macs(result) < 0.6 * search_macs(source)
    before = conv_widths(source)
    changed = {n: w for n, w in conv_widths(result).items() if w != before[n]}
    assert any("_depthwise_conv" in name for name in changed), "the depthwise convs were pruned"
    assert all(width % round_to == 0 for width in changed.values()), changed
    for module in result.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1:  # depthwise: one filter a channel
            assert module.groups == module.in_channels == module.out_channels
    assert result.classifier.out_channels == 3
    assert result(torch.zeros(1, 1, 64, 96)).shape == (1, 3, 64, 96)


@pytest.mark.parametrize("encoder", LITE)
def test_a_pruned_lite_net_rebuilds_from_its_record_and_exports_with_parity(
    encoder: str, tmp_path: Path
) -> None:
    _, model = pruned(encoder, "global", 8)
    arch = Architecture.from_dict(
        {**lite_arch(encoder).to_dict(), "layer_shapes": record_layer_shapes(model)}
    )
    rebuilt = build_model(arch).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    image = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        assert torch.equal(rebuilt(image), model(image))
    path = tmp_path / "model.onnx"
    export_onnx(rebuilt, SPEC, path)
    images = [np.random.default_rng(k).integers(0, 256, (64, 96), dtype=np.uint8) for k in (1, 2)]
    rules = [ClassPostprocess(class_id=k, threshold=0.5, min_area=0) for k in (1, 2, 3)]
    report = check_parity(
        torch_predictor(rebuilt, torch.device("cpu")), OnnxSegmenter(path), images, SPEC, rules
    )
    assert report["images"] == 2 and report["mask_agreement"] >= 0.999
