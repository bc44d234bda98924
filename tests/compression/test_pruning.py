"""Dependency-aware pruning to a MACs budget keeps the classes and a working net."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from service.compression.importance import make_importance  # noqa: E402
from service.compression.pruning import (  # noqa: E402
    distinct_ratios,
    prune_channels,
    prune_to_macs,
    search_macs,
)
from service.nets import Architecture, build_model, record_layer_shapes  # noqa: E402


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(Architecture("unet", "resnet18", 1, 4, 0.125)).eval()


def test_pruning_to_a_macs_budget_lands_just_under_it() -> None:
    model = tiny_unet()
    source_macs = search_macs(model)
    pruned, ratio = prune_to_macs(model, make_importance("fpgm"), 0.4 * source_macs, seed=0)
    macs = search_macs(pruned)
    assert 0.3 * source_macs < macs <= 0.4 * source_macs
    assert 0 < ratio < 1
    assert search_macs(model) == source_macs  # the source is left alone
    assert pruned.classifier.out_channels == 4
    assert pruned(torch.zeros(2, 1, 64, 96)).shape == (2, 4, 64, 96)


def test_a_ratio_removes_that_share_of_each_layer() -> None:
    model = tiny_unet()
    before = record_layer_shapes(model)
    prune_channels(model, make_importance("l1"), 0.5, seed=0)
    after = record_layer_shapes(model)
    assert after["encoder.layer4.1.conv1"][1] == before["encoder.layer4.1.conv1"][1] // 2
    assert after["head"][1] == before["head"][1]


def test_distinct_ratios_are_the_points_where_a_layer_loses_a_channel() -> None:
    assert distinct_ratios({4}, 0.7) == pytest.approx([0.25, 0.5, 0.7], abs=1e-6)
