"""Dependency-aware channel removal with Torch-Pruning, by a channel ratio or to a MACs budget.

Every group (a conv's filters with everything coupled to them: norm layers, the next convs'
inputs, residual adds, U-Net concatenations) is ranked on its own and loses the same fraction
of its channels, as in the FPGM paper; the classifier's outputs (the classes) are never pruned.
"""

from __future__ import annotations

import bisect
import copy
import math

import torch
import torch_pruning as tp
from torch import nn

from service.nets import SegmentationModel, count_params_and_macs

SEARCH_SIZE = 32
"""Side of the square input the pruner traces and the MACs search counts on. For sizes divisible
by 32 every layer's MACs scale with height x width alike, so MACs fractions do not depend on it:
the smallest such size is the fastest."""
MACS_TOLERANCE = 0.01


def search_macs(model: nn.Module) -> int:
    """MACs of one SEARCH_SIZE x SEARCH_SIZE image: compare fractions, not absolute values."""
    return count_params_and_macs(model, SEARCH_SIZE, SEARCH_SIZE)[1]


def prune_channels(
    model: SegmentationModel, importance: tp.importance.Importance, ratio: float, seed: int
) -> None:
    """Remove ``ratio`` of each group's current channels, lowest importance first, in place."""
    if ratio <= 0:
        return
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    device = next(model.parameters()).device
    example = torch.zeros(1, first_conv.in_channels, SEARCH_SIZE, SEARCH_SIZE, device=device)
    pruner = tp.pruner.BasePruner(
        model.eval(),
        example,
        importance=importance,
        pruning_ratio=ratio,
        ignored_layers=[model.classifier],
    )
    torch.manual_seed(seed)  # the random criterion draws from torch's generator
    pruner.step()


def prunable_widths(model: SegmentationModel) -> set[int]:
    """The output widths of the convs a ratio can still narrow."""
    return {
        m.out_channels
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m is not model.classifier and m.out_channels > 1
    }


def max_step_ratio(widths: set[int]) -> float:
    """The largest ratio that leaves every prunable layer at least one channel.

    Torch-Pruning skips a group that a ratio would empty, so past this point MACs would rise
    again with the ratio and the search below would lose its footing.
    """
    return max(0.0, 1.0 - 1.0 / min(widths) - 1e-6) if widths else 0.0


def distinct_ratios(widths: set[int], largest: float) -> list[float]:
    """One ratio per distinct outcome, ascending, up to ``largest``.

    A layer of width c keeps floor(c * (1 - ratio)) channels, a count that changes only as the
    ratio passes 1 - j/c: every ratio between two such points prunes the same channels, so the
    point just below each stands for its interval.
    """
    points = {1 - j / c - 1e-9 for c in widths for j in range(1, c)}
    return sorted({p for p in points if 0 < p < largest} | {largest})


def prune_to_macs(
    model: SegmentationModel,
    importance: tp.importance.Importance,
    target_macs: float,
    seed: int,
) -> tuple[SegmentationModel, float]:
    """A pruned copy whose ``search_macs`` is at most ``target_macs``, by the smallest ratio
    that gets there (or one within 1% of the target); returns it and its ratio.

    MACs fall monotonically over ``distinct_ratios``: a bisection over that list, whose first
    try assumes MACs fall with the square of the kept channels. Where even the largest ratio
    misses the target, that copy is returned: the caller reads the MACs.
    """
    current = search_macs(model)
    if current <= target_macs:
        return copy.deepcopy(model), 0.0
    widths = prunable_widths(model)
    ratios = distinct_ratios(widths, max_step_ratio(widths))
    last = len(ratios) - 1
    low, high = -1, last  # the smallest fitting index lies in (low, high]
    index = min(bisect.bisect_left(ratios, 1 - math.sqrt(target_macs / current)), last)
    best: tuple[SegmentationModel, float] | None = None
    while True:
        candidate = copy.deepcopy(model)
        prune_channels(candidate, importance, ratios[index], seed)
        macs = search_macs(candidate)
        if macs <= target_macs:
            best, high = (candidate, ratios[index]), index
            if macs >= (1 - MACS_TOLERANCE) * target_macs or high - low <= 1:
                return best
        elif index == last:
            return candidate, ratios[index]
        else:
            low = index
            if best is not None and high - low <= 1:
                return best
        index = (low + high) // 2 if best is not None else (low + high + 1) // 2
