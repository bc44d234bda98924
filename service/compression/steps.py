"""The pruning schedule of a job: small pruning steps, each with a short recovery, then one
long fine-tune; every completed step saved so that a job resumes after it."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

import torch

from service.architectures import DEFAULT_DICE_REDUCTION
from service.compression import SCRATCH
from service.compression.allocation import (
    Allocator,
    check_reachable,
    conv_widths,
    final_widths,
    prune_to_level,
    score_groups,
    search_level,
    search_macs,
)
from service.compression.finetune import distillation_objective, finetune
from service.compression.importance import make_importance
from service.compression.job import CompressionJob
from service.compression.state import completed_steps, load_step_model, save_step
from service.nets import build_model, record_layer_shapes
from service.training.losses import SegmentationLoss
from service.training.train import Objective, task_objective

PRUNE, FINETUNE = "prune", "finetune"
"""A step record's kind: a pruning step (with its short recovery) or the final fine-tune."""
SCRATCH_CRITERION = "fpgm"
"""The criterion whose architecture ``scratch`` re-initialises."""
FINETUNE_CHECKPOINT = "finetune.pt"


def run_pruning_steps(job: CompressionJob) -> list[dict[str, Any]]:
    """Prune, recover and evaluate from the step after the last completed one; the records of
    every pruning step. Without a final fine-tune, a step beyond the allowed drop is the last."""
    config = job.config
    records = [r for r in completed_steps(job.work_dir) if r.get("kind", PRUNE) == PRUNE]
    model = (
        load_step_model(job.work_dir, records[-1]["step"]) if records else copy.deepcopy(job.source)
    )
    model.to(job.device)
    importance = make_importance(SCRATCH_CRITERION if config.method == SCRATCH else config.method)
    allocator = Allocator(config.allocation, config.round_to or 1, config.max_layer_ratio)
    source_widths = conv_widths(job.source)
    objective = _objective(job)
    source_search_macs = search_macs(job.source)
    least = {}
    if config.flops_reduction is not None and not records:
        check_reachable(job.source, importance, allocator, config.flops_reduction)
    if config.flops_reduction is not None and len(records) < config.steps:
        final_target = source_search_macs * step_macs_fraction(
            config.flops_reduction, config.steps, config.steps, config.schedule
        )
        least = final_widths(job.source, importance, allocator, final_target, config.seed * 1000)
    for step in range(len(records) + 1, config.steps + 1):
        if records and not records[-1]["within_drop"] and config.finetune_epochs == 0:
            break
        job.watch.check()
        started = time.perf_counter()
        groups = score_groups(
            model, importance, source_widths, seed=config.seed * 1000 + step, least=least
        )
        if config.flops_reduction is not None:
            target = source_search_macs * step_macs_fraction(
                config.flops_reduction, step, config.steps, config.schedule
            )
            model, level = search_level(model, groups, allocator, target)
        else:
            level = _step_ratio(config.pruning_ratio, step, config.steps)
            model = prune_to_level(model, groups, allocator, level)
        pruned = job.measure(model, job.manifest.postprocess)
        job.watch.emit("pruned", step=step, **pruned)

        losses = _train(job, model, objective, step, config.finetune_epochs_per_step)
        records.append(_finish(job, model, step, PRUNE, level, pruned["val_dice"], losses, started))
    return records


def final_finetune(job: CompressionJob, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The one long fine-tune of the last step's net (re-initialised first for ``scratch``);
    resumes from its per-epoch checkpoint, and is saved as the step after the last."""
    config = job.config
    step = records[-1]["step"] + 1
    done = next((r for r in completed_steps(job.work_dir) if r["step"] == step), None)
    if done is not None:
        return done
    started = time.perf_counter()
    model = load_step_model(job.work_dir, records[-1]["step"])
    if config.method == SCRATCH:
        torch.manual_seed(config.seed)
        model = build_model(replace(job.source_arch, layer_shapes=record_layer_shapes(model)))
    model.to(job.device)

    losses = _train(
        job,
        model,
        _objective(job),
        step,
        config.finetune_epochs,
        lr_schedule=config.lr_schedule,
        checkpoint=job.work_dir / FINETUNE_CHECKPOINT,
    )
    last = records[-1]
    return _finish(job, model, step, FINETUNE, last["ratio"], last["val_dice"], losses, started)


def _train(
    job: CompressionJob,
    model: torch.nn.Module,
    objective: Objective,
    step: int,
    epochs: float,
    **options: Any,
) -> list[float]:
    """Fine-tune ``model`` for ``epochs`` as step ``step``, reporting every epoch."""

    def after_epoch(epoch: int, loss: float) -> None:
        job.watch.emit("epoch", step=step, epoch=epoch, loss=loss)

    config = job.config
    return finetune(
        model,
        job.crops(),
        objective,
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        first_epoch=step * 1000,
        device=job.device,
        before_batch=job.watch.check,
        after_epoch=after_epoch,
        **options,
    )


def _finish(
    job: CompressionJob,
    model: torch.nn.Module,
    step: int,
    kind: str,
    ratio: float,
    dice_before: float,
    losses: list[float],
    started: float,
) -> dict[str, Any]:
    """Evaluate the step's net, save it with its record, report it; the record."""
    record = {
        "step": step,
        "kind": kind,
        "ratio": ratio,
        **_scored(job, job.measure(model, job.manifest.postprocess)),
        "val_dice_after_pruning": dice_before,
        "losses": losses,
        "loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - started,
    }
    save_step(job.work_dir, model, job.source_arch, record)
    job.watch.emit("step", step=step, epoch=len(losses), loss=record["loss"], **step_sizes(record))
    return record


def _objective(job: CompressionJob) -> Objective:
    reduction = job.config.dice_reduction or DEFAULT_DICE_REDUCTION
    if job.config.distill:
        return distillation_objective(job.source, job.config.distill_weight, reduction)
    return task_objective(SegmentationLoss(dice_reduction=reduction))


def _scored(job: CompressionJob, measured: dict[str, Any]) -> dict[str, Any]:
    """``measured`` with its MACs fraction and Dice drop against the source."""
    drop = (job.baseline["val_dice"] - measured["val_dice"]) * 100
    return {
        **measured,
        "macs_fraction": measured["macs"] / job.baseline["macs"],
        "dice_drop_points": drop,
        "within_drop": drop <= job.config.max_dice_drop,
    }


def step_macs_fraction(reduction: float, step: int, steps: int, schedule: str) -> float:
    """The share of the source's MACs step ``step`` of ``steps`` aims at: ``linear`` removes
    equal parts, ``agp`` follows Zhu & Gupta's cubic (1 - (1 - k/n)^3: large steps first)."""
    progress = step / steps
    if schedule == "agp":
        progress = 1 - (1 - progress) ** 3
    elif schedule != "linear":
        raise ValueError(f"unknown schedule {schedule!r}")
    return 1 - reduction * progress


def _step_ratio(total_ratio: float, step: int, steps: int) -> float:
    """The share of the current channels to remove so that ``step`` reaches its part of the
    total: after step k, (1 - total_ratio * k / steps) of the source's channels remain."""
    before = 1 - total_ratio * (step - 1) / steps
    after = 1 - total_ratio * step / steps
    return 1 - after / before


def step_sizes(record: dict[str, Any]) -> dict[str, Any]:
    """MACs, params and validation Dice of a step record, for progress events."""
    return {key: record[key] for key in ("macs", "params", "val_dice")}
