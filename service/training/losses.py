"""BCE + soft Dice: BCE gives every pixel a gradient, Dice keeps small defects from being
drowned by the background. A model with a presence head adds BCE on its presence logits
against "the crop holds this class", so the gate learns from the very masks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BceDiceLoss(nn.Module):
    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        probabilities = torch.sigmoid(logits)
        dims = (0, 2, 3)
        intersection = (probabilities * target).sum(dims)
        total = probabilities.sum(dims) + target.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        return bce + self.dice_weight * (1 - dice.mean())


PRESENCE_WEIGHT = 0.5


def presence_targets(masks: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) masks -> (N, C): 1 where the image holds any pixel of the class."""
    return masks.amax(dim=(2, 3))


class SegmentationLoss(nn.Module):
    """BceDiceLoss on the masks, plus ``presence_weight`` x BCE on presence logits if given."""

    def __init__(self, presence_weight: float = PRESENCE_WEIGHT) -> None:
        super().__init__()
        self.masks = BceDiceLoss()
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
