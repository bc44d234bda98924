"""The criteria: the paper's FPGM on raw weights, and how it differs from L1 and from
Torch-Pruning's FPGMImportance (which measures |w|^p)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tp = pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

from service.compression import CRITERIA  # noqa: E402
from service.compression.importance import (  # noqa: E402
    IMPORTANCES,
    GeometricMedianImportance,
    make_importance,
)
from service.nets import Architecture, build_model  # noqa: E402


def conv_group(filters: list[list[float]]) -> tp.dependency.Group:
    """The pruning group of a 1x2-kernel conv holding ``filters``, then BN and a 1x1 conv.

    The 1x1 conv weighs every input alike, so criteria that also score the next layer's inputs
    (Torch-Pruning's) rank the channels by ``filters`` alone.
    """
    conv = nn.Conv2d(1, len(filters), (1, 2), bias=False)
    conv.weight.data = torch.tensor(filters).reshape(len(filters), 1, 1, 2)
    consumer = nn.Conv2d(len(filters), 3, 1)
    nn.init.constant_(consumer.weight, 0.5)
    model = nn.Sequential(conv, nn.BatchNorm2d(len(filters)), nn.ReLU(), consumer)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 1, 4, 4))
    return graph.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(len(filters))))


def least_important(method: str, group: tp.dependency.Group) -> int:
    return int(torch.argmin(make_importance(method)(group)))


def test_fpgm_prunes_the_filter_at_the_geometric_median_first() -> None:
    # Four filters around a centre, and the centre itself (their mean): the centre is the one
    # the others can replace, though it does not have the smallest norm.
    centre = [10.0, 10.0]
    around = [[19.0, 10.0], [1.0, 10.0], [10.0, 19.0], [10.0, 1.0]]
    group = conv_group([*around, centre])
    assert least_important("fpgm", group) == 4
    assert least_important("l1", group) != 4  # [1, 10] and [10, 1] have the smaller norms


def test_fpgm_on_raw_weights_differs_from_torch_pruning_on_their_magnitudes() -> None:
    # w and -w are far apart, but |w|^2 makes them identical: Torch-Pruning's criterion then
    # keeps [0.9, 0.1], the filter nearest the others in raw weights.
    group = conv_group([[1.0, 0.0], [-1.0, 0.0], [0.9, 0.1]])
    assert least_important("fpgm", group) == 2
    assert int(torch.argmax(make_importance("tp_fpgm")(group))) == 2


def test_grouped_convs_compare_filters_within_their_group_only() -> None:
    weight = torch.tensor([[0.0, 0.0], [3.0, 4.0], [100.0, 0.0], [100.0, 1.0]])
    scores = GeometricMedianImportance().filter_scores(weight.reshape(4, 1, 1, 2), groups=2)
    assert scores.tolist() == pytest.approx([5.0, 5.0, 1.0, 1.0])
    assert GeometricMedianImportance().filter_scores(weight.reshape(4, 1, 1, 2), groups=4) is None


@pytest.mark.parametrize("method", CRITERIA)
def test_every_criterion_scores_every_channel_of_every_group(method: str) -> None:
    model = build_model(Architecture("unet", "resnet18", 1, 4, 0.125)).eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 1, 64, 64))
    groups = list(graph.get_all_groups(ignored_layers=[model.classifier]))
    assert groups
    for group in groups:
        scores = make_importance(method)(group)
        assert scores.shape == (len(group[0].idxs),)
        assert torch.isfinite(scores).all()


def test_the_table_matches_the_names_and_unknown_methods_fail() -> None:
    assert tuple(IMPORTANCES) == CRITERIA
    with pytest.raises(ValueError, match="unknown pruning criterion 'taylor'"):
        make_importance("taylor")
