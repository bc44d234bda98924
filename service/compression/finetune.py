"""Fine-tuning after pruning (a short recovery between steps, one long fine-tune at the end),
optionally distilled from the source model."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from service.architectures import DEFAULT_DICE_REDUCTION
from service.inference.outputs import split_prediction
from service.training.crops import TrainingCrops
from service.training.losses import SegmentationLoss
from service.training.train import (
    Objective,
    Optimisation,
    cpu_state,
    epoch_loader,
    train_one_epoch,
)

WEIGHT_DECAY = 1e-4


def distillation_objective(
    teacher: nn.Module, weight: float, dice_reduction: str = DEFAULT_DICE_REDUCTION
) -> Objective:
    """The task loss against the masks, plus ``weight`` x BCE against the teacher's
    probabilities (pixels, and presence scores where both nets have a presence head).

    Soft-target BCE rather than MSE on probabilities: its gradient, sigmoid(student) - teacher,
    does not vanish where the student's logits saturate.
    """
    task_loss = SegmentationLoss(dice_reduction=dice_reduction)
    teacher.eval()

    def objective(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        logits, presence = split_prediction(model(images))
        with torch.no_grad():
            teacher_logits, teacher_presence = split_prediction(teacher(images))
        distill = _soft_bce(logits, teacher_logits)
        if presence is not None and teacher_presence is not None:
            distill = distill + _soft_bce(presence, teacher_presence)
        return task_loss(logits, presence, masks) + weight * distill

    return objective


def _soft_bce(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(student.float(), torch.sigmoid(teacher.float()))


def finetune(
    model: nn.Module,
    crops: TrainingCrops,
    objective: Objective,
    *,
    epochs: float,
    batch_size: int,
    lr: float,
    seed: int,
    first_epoch: int,
    device: torch.device,
    before_batch: Callable[[], None],
    after_epoch: Callable[[int, float], None],
    lr_schedule: str = "cosine",
    checkpoint: Path | None = None,
) -> list[float]:
    """``epochs`` epochs (a fraction is allowed: the last epoch stops early) with a fresh AdamW
    and ``lr_schedule``; the mean loss of each epoch.

    A fresh optimiser per call: pruning replaced the parameters the old one tracked. Epoch ``e``
    draws the crops of ``first_epoch + e``, so calls see different crops and a resumed job sees
    the same ones. With ``checkpoint``, the model, optimiser, schedule and losses are saved
    there after every epoch and picked up from there on the next call.
    """
    steps_per_epoch = math.ceil(len(crops) / batch_size)
    total_batches = math.ceil(epochs * steps_per_epoch - 1e-9)
    if total_batches <= 0:
        return []
    optimisation = Optimisation.for_model(
        model, lr, WEIGHT_DECAY, total_batches, device, schedule=lr_schedule
    )
    losses = _resume(checkpoint, model, optimisation)
    for epoch in range(len(losses) + 1, math.ceil(epochs - 1e-9) + 1):
        loss = train_one_epoch(
            model,
            epoch_loader(crops, batch_size, seed, first_epoch + epoch),
            objective,
            optimisation,
            device,
            description=f"fine-tune epoch {epoch}/{epochs:g}",
            progress=False,
            before_batch=before_batch,
            max_batches=total_batches - (epoch - 1) * steps_per_epoch,
        )
        losses.append(loss)
        if checkpoint is not None:
            _save(checkpoint, model, optimisation, losses)
        after_epoch(epoch, loss)
    return losses


def _resume(checkpoint: Path | None, model: nn.Module, optimisation: Optimisation) -> list[float]:
    """The losses of the epochs a checkpoint holds, with its state loaded; [] without one."""
    if checkpoint is None or not checkpoint.is_file():
        return []
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimisation.optimizer.load_state_dict(state["optimizer"])
    optimisation.scheduler.load_state_dict(state["scheduler"])
    optimisation.scaler.load_state_dict(state["scaler"])
    return [float(loss) for loss in state["losses"]]


def _save(
    checkpoint: Path, model: nn.Module, optimisation: Optimisation, losses: list[float]
) -> None:
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": cpu_state(model),
        "optimizer": optimisation.optimizer.state_dict(),
        "scheduler": optimisation.scheduler.state_dict(),
        "scaler": optimisation.scaler.state_dict(),
        "losses": losses,
    }
    staging = checkpoint.with_name(f".{checkpoint.name}.tmp")
    torch.save(state, staging)
    staging.replace(checkpoint)
