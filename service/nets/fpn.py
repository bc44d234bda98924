"""FPN decoder and head, as segmentation_models_pytorch's FPN (merge by add)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from service.nets.resnet import scale_channels

PYRAMID_CHANNELS = 256
SEGMENTATION_CHANNELS = 128
HEAD_UPSAMPLING = 4


def group_norm(channels: int) -> nn.GroupNorm:
    """32 groups at full width, as smp; narrower layers keep at least 4 channels per group.

    `channels` is a multiple of 8 (see scale_channels), so the group count divides it.
    """
    return nn.GroupNorm(math.gcd(32, channels // 4), channels)


class TopDownBlock(nn.Module):
    """One top-down step: the coarser level upsampled x2 plus a 1x1 lateral conv of the skip."""

    def __init__(self, pyramid_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_channels, pyramid_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") + self.skip_conv(skip)


class Conv3x3GNReLU(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            group_norm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return x


def segmentation_block(in_channels: int, out_channels: int, n_upsamples: int) -> nn.Sequential:
    """Brings one pyramid level to /4: conv-GN-ReLU blocks, each but a /4 one upsampling x2."""
    blocks = [Conv3x3GNReLU(in_channels, out_channels, upsample=n_upsamples > 0)]
    blocks += [
        Conv3x3GNReLU(out_channels, out_channels, upsample=True) for _ in range(1, n_upsamples)
    ]
    return nn.Sequential(*blocks)


class FPNDecoder(nn.Module):
    """Pyramid P5..P2 from layer4..layer1 (the stem is unused), each brought to /4 and summed."""

    def __init__(
        self,
        encoder_channels: Sequence[int],
        pyramid_channels: int,
        segmentation_channels: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _, layer1, layer2, layer3, layer4 = encoder_channels
        self.p5 = nn.Conv2d(layer4, pyramid_channels, 1)
        self.p4 = TopDownBlock(pyramid_channels, layer3)
        self.p3 = TopDownBlock(pyramid_channels, layer2)
        self.p2 = TopDownBlock(pyramid_channels, layer1)
        self.seg_blocks = nn.ModuleList(
            segmentation_block(pyramid_channels, segmentation_channels, n_upsamples)
            for n_upsamples in (3, 2, 1, 0)
        )
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        _, layer1, layer2, layer3, layer4 = features
        p5 = self.p5(layer4)
        p4 = self.p4(p5, layer3)
        p3 = self.p3(p4, layer2)
        p2 = self.p2(p3, layer1)
        s5, s4, s3, s2 = (
            block(p) for block, p in zip(self.seg_blocks, (p5, p4, p3, p2), strict=True)
        )
        return self.dropout(s5 + s4 + s3 + s2)


def build_fpn(
    encoder_channels: Sequence[int],
    num_classes: int,
    width_multiplier: float,
    head_stride: int = 1,
    dropout: float = 0.0,
) -> tuple[FPNDecoder, nn.Sequential]:
    """The decoder (output at /4) and its head: a 1x1 conv to the classes, bilinear x4.

    ``head_stride`` is the U-Net's option: FPN's head always works at /4, so only the default
    is accepted. Dropout has no weights, so it is not part of a saved architecture; it only
    matters in training.
    """
    if head_stride != 1:
        raise ValueError("head_stride is a U-Net option: the FPN head always works at /4")
    segmentation_channels = scale_channels(SEGMENTATION_CHANNELS, width_multiplier)
    decoder = FPNDecoder(
        encoder_channels,
        scale_channels(PYRAMID_CHANNELS, width_multiplier),
        segmentation_channels,
        dropout,
    )
    head = nn.Sequential(
        nn.Conv2d(segmentation_channels, num_classes, 1),
        nn.Upsample(scale_factor=HEAD_UPSAMPLING, mode="bilinear", align_corners=True),
    )
    return decoder, head
