"""BCE + soft Dice: BCE gives every pixel a gradient, Dice keeps small defects from being
drowned by the background. A model with a presence head adds BCE on its presence logits
against "the crop holds this class", so the gate learns from the very masks.

Dice is reduced one of two ways. ``batch``: per class over the whole batch, smoothed, so a
class absent from the batch scores 1 when nothing is predicted. ``pairs``: per (image, class)
pair whose mask is not empty, averaged over those pairs; empty pairs are left to BCE. Where
defects are a few hundred pixels of a crop, ``batch`` lets a net that predicts nothing sit in
a deep minimum (every absent class already scores 1, and the summed probabilities of a whole
batch swamp a small defect's intersection); ``pairs`` scores each defect on its own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from service.architectures import DEFAULT_DICE_REDUCTION, DICE_REDUCTIONS


class BceDiceLoss(nn.Module):
    def __init__(
        self, dice_weight: float = 1.0, smooth: float = 1.0, reduction: str = DEFAULT_DICE_REDUCTION
    ) -> None:
        super().__init__()
        if reduction not in DICE_REDUCTIONS:
            raise ValueError(
                f"unknown Dice reduction {reduction!r}: choose one of {DICE_REDUCTIONS}"
            )
        self.dice_weight = dice_weight
        self.smooth = smooth
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        probabilities = torch.sigmoid(logits)
        if self.reduction == "pairs":
            return bce + self.dice_weight * _pair_dice_loss(probabilities, target)
        dims = (0, 2, 3)
        intersection = (probabilities * target).sum(dims)
        total = probabilities.sum(dims) + target.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        return bce + self.dice_weight * (1 - dice.mean())


def _pair_dice_loss(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - the mean soft Dice of the (image, class) pairs whose mask is not empty (0 if none)."""
    dims = (2, 3)
    truth = target.sum(dims)
    present = truth > 0
    if not present.any():
        return probabilities.sum() * 0.0
    intersection = (probabilities * target).sum(dims)
    dice = 2 * intersection / (probabilities.sum(dims) + truth)
    return 1 - dice[present].mean()


PRESENCE_WEIGHT = 0.5


def presence_targets(masks: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) masks -> (N, C): 1 where the image holds any pixel of the class."""
    return masks.amax(dim=(2, 3))


class SegmentationLoss(nn.Module):
    """BceDiceLoss on the masks, plus ``presence_weight`` x BCE on presence logits if given."""

    def __init__(
        self, presence_weight: float = PRESENCE_WEIGHT, dice_reduction: str = DEFAULT_DICE_REDUCTION
    ) -> None:
        super().__init__()
        self.masks = BceDiceLoss(reduction=dice_reduction)
        self.presence_weight = presence_weight

    def forward(
        self, logits: torch.Tensor, presence: torch.Tensor | None, target: torch.Tensor
    ) -> torch.Tensor:
        loss = self.masks(logits, target)
        if presence is None:
            return loss
        presence_loss = F.binary_cross_entropy_with_logits(
            presence.float(), presence_targets(target)
        )
        return loss + self.presence_weight * presence_loss
