"""U-Net decoder and head, as segmentation_models_pytorch's Unet (no attention, no centre block)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from service.nets.resnet import scale_channels

DECODER_CHANNELS = (256, 128, 64, 32, 16)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DecoderBlock(nn.Module):
    """Nearest x2 upsample, concat the encoder skip (if any), then conv-BN-ReLU twice."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    """Five decoder blocks from the /32 feature back to full resolution.

    The blocks take the skips layer3, layer2, layer1, stem in turn; the fifth has none.
    """

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> None:
        super().__init__()
        deepest, *skip_channels = reversed(encoder_channels)
        in_channels = [deepest, *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            DecoderBlock(block_in, skip, block_out)
            for block_in, skip, block_out in zip(
                in_channels, [*skip_channels, 0], decoder_channels, strict=True
            )
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x, *skips = reversed(features)
        for block, skip in zip(self.blocks, [*skips, None], strict=True):
            x = block(x, skip)
        return x


def build_unet(
    encoder_channels: Sequence[int], num_classes: int, width_multiplier: float
) -> tuple[UnetDecoder, nn.Conv2d]:
    """The decoder and its head (a 3x3 conv to the class logits, already at full resolution)."""
    decoder_channels = [scale_channels(c, width_multiplier) for c in DECODER_CHANNELS]
    head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
    return UnetDecoder(encoder_channels, decoder_channels), head
