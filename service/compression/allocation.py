"""How many channels each layer keeps, and which: the allocation, then Torch-Pruning removes them.

A *group* is Torch-Pruning's unit: a conv's filters with everything coupled to them (norm
layers, the next convs' inputs, residual adds, U-Net concatenations); every channel belongs to
exactly one group. The criterion scores a group's channels; the allocation decides how many
each group keeps:

- ``uniform``: every group loses the same fraction of its channels (the FPGM paper's way).
- ``global``: the groups' scores, each divided by its group's mean so that layers compare,
  are ranked together and one threshold decides (layer-adaptive: a layer whose channels look
  alike loses more), with a cap: no group keeps less than ``1 - max_layer_ratio`` of its width
  in the source, so none is emptied.

Kept widths are multiples of ``round_to`` (ONNX Runtime's blocked NCHWc convolutions need
channel counts that are multiples of the SIMD block: 16 with AVX-512, 8 with AVX2); a group
already narrower than ``round_to`` keeps its width. The stem's input and the classifier's
outputs (the classes) are never pruned.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from service.nets import SegmentationModel, count_params_and_macs

SEARCH_SIZE = 32
"""Side of the square input the pruner traces and the MACs search counts on. For sizes divisible
by 32 every layer's MACs scale with height x width alike, so MACs fractions do not depend on it:
the smallest such size is the fastest."""
MACS_TOLERANCE = 0.01
SEARCH_ITERATIONS = 12
"""Bisection steps over the level: 1/4096 of the range, finer than one channel of any layer."""
MAX_LEVEL = 1.0 - 1e-6
"""The highest level searched: just under pruning everything the caps allow."""
HOLD_ROUNDS = 6
"""Bisections at most in one search, each holding the groups whose block overshot in the last."""


@dataclass(frozen=True)
class GroupScores:
    """One prunable group: its root conv's name, current and source widths, channel scores."""

    root: str
    width: int
    source_width: int
    scores: torch.Tensor
    least: int = 0
    """Channels no step may cut below: the width the job's final plan gives the group."""

    def floor(self, max_layer_ratio: float, round_to: int) -> int:
        """The fewest channels the cap (and ``least``) allow, rounded up to the block, at most
        the width."""
        least = max(1, math.ceil(self.source_width * (1 - max_layer_ratio) - 1e-9))
        return min(self.width, max(_round_up(least, round_to), self.least))

    def keep(self, wanted: float, max_layer_ratio: float, round_to: int) -> int:
        """``wanted`` channels rounded to the nearest block multiple, within [floor, width]."""
        if self.width <= round_to:
            return self.width
        rounded = max(round_to, int(wanted / round_to + 0.5) * round_to)
        return max(self.floor(max_layer_ratio, round_to), min(self.width, rounded))

    def pruned_indices(self, keep: int) -> list[int]:
        """The ``width - keep`` lowest-scored channels."""
        order = torch.argsort(self.scores, stable=True)
        return sorted(order[: self.width - keep].tolist())


Plan = dict[str, int]
"""Root conv name -> channels to keep."""


@dataclass(frozen=True)
class Allocator:
    """Turns a scalar level (0 = prune nothing, towards 1 = prune the most) into a plan."""

    allocation: str
    round_to: int
    max_layer_ratio: float

    def plan(self, groups: list[GroupScores], level: float) -> Plan:
        if self.allocation == "uniform":
            return {
                g.root: g.keep(g.width * (1 - level), self.max_layer_ratio, self.round_to)
                for g in groups
            }
        if self.allocation == "global":
            return self._global_plan(groups, level)
        raise ValueError(f"unknown allocation {self.allocation!r}; choose uniform or global")

    def _global_plan(self, groups: list[GroupScores], level: float) -> Plan:
        normalised = [_normalised(g.scores) for g in groups]
        everything = torch.cat(normalised)
        removed = int(level * everything.numel())
        if removed <= 0:
            return {g.root: g.width for g in groups}
        threshold = torch.sort(everything).values[min(removed, everything.numel()) - 1]
        return {
            g.root: g.keep(float((scores > threshold).sum()), self.max_layer_ratio, self.round_to)
            for g, scores in zip(groups, normalised, strict=True)
        }


def _normalised(scores: torch.Tensor) -> torch.Tensor:
    mean = scores.float().mean()
    return scores.float() / mean if mean > 0 else scores.float()


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def search_macs(model: nn.Module) -> int:
    """MACs of one SEARCH_SIZE x SEARCH_SIZE image: compare fractions, not absolute values."""
    return count_params_and_macs(model, SEARCH_SIZE, SEARCH_SIZE)[1]


def conv_widths(model: nn.Module) -> dict[str, int]:
    """Every conv's output width by module name (what a plan's cap is measured against)."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _graph(model: SegmentationModel) -> tp.DependencyGraph:
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    device = next(model.parameters()).device
    example = torch.zeros(1, first_conv.in_channels, SEARCH_SIZE, SEARCH_SIZE, device=device)
    return tp.DependencyGraph().build_dependency(model.eval(), example_inputs=example)


def _groups(graph: tp.DependencyGraph, model: SegmentationModel) -> list[tp.dependency.Group]:
    return list(
        graph.get_all_groups(
            ignored_layers=model.output_layers, root_module_types=[nn.Conv2d, nn.Linear]
        )
    )


def score_groups(
    model: SegmentationModel,
    importance: tp.importance.Importance,
    source_widths: Mapping[str, int],
    seed: int,
    least: Mapping[str, int] | None = None,
) -> list[GroupScores]:
    """The criterion's scores for every prunable group of ``model``; ``least`` (by root conv)
    the widths below which no plan may cut a group (see ``final_widths``)."""
    graph = _graph(model)
    names = {module: name for name, module in model.named_modules()}
    torch.manual_seed(seed)  # the random criterion draws from torch's generator
    scored = []
    for group in _groups(graph, model):
        root = group[0].dep.target.module
        if not graph.is_out_channel_pruning_fn(group[0].dep.handler):
            continue
        scores = importance(group)
        if scores is None:
            continue
        name = names[root]
        width = graph.get_out_channels(root)
        scored.append(
            GroupScores(
                name,
                width,
                source_widths.get(name, width),
                scores.cpu(),
                (least or {}).get(name, 0),
            )
        )
    return scored


def final_widths(
    source: SegmentationModel,
    importance: tp.importance.Importance,
    allocator: Allocator,
    target_macs: float,
    seed: int,
) -> Plan:
    """Each group's width in the plan one search from the source finds at a job's final target.

    Pruning steps only ever narrow, and each step's search ranks the channels of the net it is
    given: steps that take every group but one to its cap floor leave the last step nothing to
    cut but that group's block, however far under the target it lands (L1 on NEU-Seg: 10.3% of
    the MACs for an 11% target). With these widths as floors the steps still rank and narrow
    as they go, and the last one can always reach this plan, which lies within the tolerance of
    the target: every criterion ends at its target's MACs."""
    groups = score_groups(source, importance, conv_widths(source), seed)
    result, _ = search_level(source, groups, allocator, target_macs)
    widths = conv_widths(result)
    return {group.root: widths.get(group.root, group.width) for group in groups}


class TargetUnreachable(ValueError):
    """A MACs target beyond what the allocation's caps allow: known before any training."""

    code = "target_unreachable"


def most_reduction(
    source: SegmentationModel, importance: tp.importance.Importance, allocator: Allocator
) -> float:
    """The largest share of ``source``'s MACs the allocation can remove: every group at the
    floor its cap (``max_layer_ratio``) and ``round_to`` leave, the stem's input and the class
    outputs untouched."""
    groups = score_groups(source, importance, conv_widths(source), seed=0)
    floor = prune_to_level(source, groups, allocator, MAX_LEVEL)
    return 1.0 - search_macs(floor) / search_macs(source)


def check_reachable(
    source: SegmentationModel,
    importance: tp.importance.Importance,
    allocator: Allocator,
    flops_reduction: float,
) -> None:
    """Raise TargetUnreachable, with the most these settings allow, when ``flops_reduction``
    lies beyond it by more than the MACs tolerance."""
    most = most_reduction(source, importance, allocator)
    if (1 - flops_reduction) < (1 - most) * (1 - MACS_TOLERANCE):
        raise TargetUnreachable(
            f"target_unreachable: a flops_reduction of {flops_reduction:.3f} is beyond what "
            f"these settings allow on this source: at most {most:.3f} (max_layer_ratio "
            f"{allocator.max_layer_ratio}, round_to {allocator.round_to}, the stem's input and "
            "the class outputs kept)"
        )


def apply_plan(model: SegmentationModel, groups: list[GroupScores], plan: Plan) -> None:
    """Remove, in place, each group's lowest-scored channels down to the plan's width."""
    graph = _graph(model)
    modules = dict(model.named_modules())
    for group in groups:
        keep = plan[group.root]
        if keep >= group.width:
            continue
        root = modules[group.root]
        pruning_group = graph.get_pruning_group(
            root, tp.prune_conv_out_channels, group.pruned_indices(keep)
        )
        if graph.check_pruning_group(pruning_group):
            pruning_group.prune()


def pruned_copy(
    model: SegmentationModel, groups: list[GroupScores], plan: Plan
) -> SegmentationModel:
    candidate = copy.deepcopy(model)
    apply_plan(candidate, groups, plan)
    return candidate


def prune_to_level(
    model: SegmentationModel,
    groups: list[GroupScores],
    allocator: Allocator,
    level: float,
    held: Plan | None = None,
) -> SegmentationModel:
    """A pruned copy at one level: a channel ratio (uniform) or the share of channels ranked
    out (global); the groups in ``held`` keep the widths it gives them instead."""
    return pruned_copy(model, groups, _held_plan(groups, allocator, level, held or {}))


def _held_plan(groups: list[GroupScores], allocator: Allocator, level: float, held: Plan) -> Plan:
    return {**allocator.plan(groups, level), **held}


@dataclass
class _Bracket:
    """What one bisection found: the best copy at or under the target (with its level and
    MACs), and the plans of the two levels either side of the target closest to it."""

    best: tuple[SegmentationModel, float] | None = None
    best_macs: float = 0.0
    under: Plan | None = None
    over: Plan | None = None
    over_level: float = 0.0


def search_level(
    model: SegmentationModel,
    groups: list[GroupScores],
    allocator: Allocator,
    target_macs: float,
    measure: Callable[[nn.Module], float] = search_macs,
) -> tuple[SegmentationModel, float]:
    """The pruned copy whose MACs come closest to ``target_macs`` from below (within 1%), by
    bisection over the level; where even the largest level misses, that copy.

    Widths move in blocks of ``round_to``, so at the level where the target lies one group may
    lose a block worth several percent of the MACs (a wide layer on a large map), and plain
    bisection would stop well under the target, at a different distance for every criterion.
    Then the bisection is run twice more: once with that group at the width it has just under
    the target and the others searched again from nothing pruned (they may then keep more than
    the level gave them), once with the group held at the width it has just over the target and
    the bisection going on from there over the others, whose blocks are worth less; the second
    repeats until the MACs are within the tolerance or no group is left to hold
    (``HOLD_ROUNDS`` at most). The copy closest to the target from below wins."""
    if measure(model) <= target_macs:
        return copy.deepcopy(model), 0.0
    held: Plan = {}
    low = 0.0
    closest = _Closest(target_macs)
    for _ in range(HOLD_ROUNDS):
        bracket = _bisect(model, groups, allocator, target_macs, measure, low, held)
        closest.offer(bracket)
        over, under = bracket.over, bracket.under
        if closest.within_tolerance or over is None or under is None:
            break
        jumped = [root for root, width in over.items() if under[root] != width and root not in held]
        if not jumped:
            break
        narrowed = {**held, **{root: under[root] for root in jumped}}
        closest.offer(_bisect(model, groups, allocator, target_macs, measure, 0.0, narrowed))
        if closest.within_tolerance:
            break
        held.update({root: over[root] for root in jumped})
        low = bracket.over_level
    if closest.best is None:
        return prune_to_level(model, groups, allocator, MAX_LEVEL, held), MAX_LEVEL
    return closest.best


@dataclass
class _Closest:
    """The copy with the most MACs at or under the target among the bisections offered."""

    target_macs: float
    best: tuple[SegmentationModel, float] | None = None
    macs: float = 0.0

    def offer(self, bracket: _Bracket) -> None:
        if bracket.best is not None and bracket.best_macs > self.macs:
            self.best, self.macs = bracket.best, bracket.best_macs

    @property
    def within_tolerance(self) -> bool:
        return _within_tolerance(self.macs, self.target_macs)


def _within_tolerance(macs: float, target_macs: float) -> bool:
    """At most MACS_TOLERANCE under the target (callers keep only copies at or under it)."""
    return macs >= (1 - MACS_TOLERANCE) * target_macs


def _bisect(
    model: SegmentationModel,
    groups: list[GroupScores],
    allocator: Allocator,
    target_macs: float,
    measure: Callable[[nn.Module], float],
    low: float,
    held: Plan,
) -> _Bracket:
    high = MAX_LEVEL
    bracket = _Bracket()
    for _ in range(SEARCH_ITERATIONS):
        level = (low + high) / 2
        plan = _held_plan(groups, allocator, level, held)
        candidate = pruned_copy(model, groups, plan)
        macs = measure(candidate)
        if macs <= target_macs:
            high = level
            bracket.under = plan
            if macs > bracket.best_macs:
                bracket.best, bracket.best_macs = (candidate, level), macs
            if _within_tolerance(macs, target_macs):
                break
        else:
            low = level
            bracket.over, bracket.over_level = plan, level
    return bracket
