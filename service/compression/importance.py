"""Channel importance criteria for Torch-Pruning, chosen by name from one table.

An importance is Torch-Pruning's interface: a callable taking a dependency group (every layer
whose channels must go together: a conv's filters, its norm layer, the next convs' inputs,
residual and skip partners) and returning one score per channel of the group's root; the pruner
removes the lowest scores first.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from service.compression import CRITERIA


class FilterImportance(tp.importance.Importance):
    """Scores each conv/linear's own output filters, then averages over the group.

    Only layers whose *output* channels are in the group are scored: the filters are what a
    filter criterion judges. Norm layers (a per-channel scale, not a filter) and the slices of
    consuming layers' inputs are skipped. Each layer's scores are divided by their mean before
    averaging, so that every coupled conv (e.g. the convs joined by a residual add) gets an
    equal vote whatever the scale of its weights.
    """

    @abc.abstractmethod
    def filter_scores(self, weight: torch.Tensor, groups: int) -> torch.Tensor | None:
        """One score per output filter of a (out, in/groups, ...) weight; None abstains."""

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        root_channels = len(group[0].idxs)
        total = torch.zeros(root_channels)
        votes = torch.zeros(root_channels)
        for item in group:
            layer, handler = item.dep.target.module, item.dep.handler
            if not _is_output_pruning(layer, handler) or None in item.root_idxs:
                continue
            scores = self.filter_scores(layer.weight.detach(), getattr(layer, "groups", 1))
            if scores is None:
                continue
            scores = scores.float().cpu()[item.idxs]
            mean = scores.mean()
            root = torch.as_tensor(item.root_idxs)
            total.index_add_(0, root, scores / mean if mean > 0 else scores)
            votes.index_add_(0, root, torch.ones(len(root)))
        if not votes.any():
            return None
        return total / votes.clamp(min=1)


def _is_output_pruning(layer: nn.Module, handler: Callable) -> bool:
    return (
        isinstance(layer, nn.modules.conv._ConvNd)
        and not layer.transposed
        and handler == tp.prune_conv_out_channels
    ) or (isinstance(layer, nn.Linear) and handler == tp.prune_linear_out_channels)


class GeometricMedianImportance(FilterImportance):
    """FPGM (He et al., CVPR 2019) on the raw filter weights.

    A filter's score is the sum of the Euclidean distances from its flattened weights to every
    other filter of the same layer. The filter with the smallest sum lies nearest the layer's
    geometric median: the others can best stand in for it, so it is pruned first. Unlike
    Torch-Pruning's FPGMImportance this uses the weights w themselves, not |w|^p.

    A grouped conv's filters see different input channels, so distances are taken within each
    conv group only; a depthwise conv (one filter per group) has nothing to compare and abstains.
    """

    def filter_scores(self, weight: torch.Tensor, groups: int) -> torch.Tensor | None:
        per_group = weight.shape[0] // groups
        if per_group < 2:
            return None
        filters = weight.float().flatten(1).reshape(groups, per_group, -1)
        return torch.cdist(filters, filters).sum(dim=2).flatten()


IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = dict(
    zip(
        CRITERIA,
        (
            GeometricMedianImportance,
            lambda: tp.importance.MagnitudeImportance(p=1),
            tp.importance.RandomImportance,
            tp.importance.FPGMImportance,
        ),
        strict=True,
    )
)


def make_importance(method: str) -> tp.importance.Importance:
    """A fresh criterion for ``method``; an unknown name is an error listing the choices."""
    if method not in IMPORTANCES:
        choices = ", ".join(IMPORTANCES)
        raise ValueError(f"unknown pruning criterion {method!r}; choose one of {choices}")
    return IMPORTANCES[method]()
