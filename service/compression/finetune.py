"""Fine-tuning between pruning steps, optionally distilled from the source model."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from service.training.crops import TrainingCrops
from service.training.losses import BceDiceLoss
from service.training.train import (
    Objective,
    Optimisation,
    epoch_loader,
    train_one_epoch,
)

WEIGHT_DECAY = 1e-4


def distillation_objective(teacher: nn.Module, weight: float) -> Objective:
    """BCE + Dice against the masks, plus ``weight`` x BCE against the teacher's probabilities.

    Soft-target BCE rather than MSE on probabilities: its gradient, sigmoid(student) - teacher,
    does not vanish where the student's logits saturate.
    """
    task_loss = BceDiceLoss()
    teacher.eval()

    def objective(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        logits = model(images)
        with torch.no_grad():
            soft_targets = torch.sigmoid(teacher(images).float())
        distill = F.binary_cross_entropy_with_logits(logits.float(), soft_targets)
        return task_loss(logits, masks) + weight * distill

    return objective


def finetune(
    model: nn.Module,
    crops: TrainingCrops,
    objective: Objective,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    first_epoch: int,
    device: torch.device,
    before_batch: Callable[[], None],
    after_epoch: Callable[[int, float], None],
) -> list[float]:
    """``epochs`` epochs with a fresh AdamW and warm-up + cosine schedule; the mean losses.

    A fresh optimiser per pruning step: pruning replaced the parameters the old one tracked.
    Epoch ``e`` draws the crops of ``first_epoch + e``, so steps see different crops and a
    resumed job sees the same ones.
    """
    steps_per_epoch = math.ceil(len(crops) / batch_size)
    optimisation = Optimisation.for_model(
        model, lr, WEIGHT_DECAY, max(1, steps_per_epoch * epochs), device
    )
    losses = []
    for epoch in range(1, epochs + 1):
        loss = train_one_epoch(
            model,
            epoch_loader(crops, batch_size, seed, first_epoch + epoch),
            objective,
            optimisation,
            device,
            description=f"fine-tune epoch {epoch}/{epochs}",
            progress=False,
            before_batch=before_batch,
        )
        losses.append(loss)
        after_epoch(epoch, loss)
    return losses
