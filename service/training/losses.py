"""BCE + soft Dice: BCE gives every pixel a gradient, Dice keeps small defects from being
drowned by the background."""

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
