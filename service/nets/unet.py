"""U-Net decoder and head, as segmentation_models_pytorch's Unet (no attention, no centre block)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from service.architectures import HEAD_STRIDES
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
    """Decoder blocks from the /32 feature back up, one per entry of ``decoder_channels``.

    The blocks take the skips layer3, layer2, layer1, stem in turn; a fifth block, at full
    resolution, has none. Fewer than five blocks end the decoder at /2 or /4.
    """

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> None:
        super().__init__()
        deepest, *skip_channels = reversed(encoder_channels)
        in_channels = [deepest, *decoder_channels[:-1]]
        skips = [*skip_channels, 0][: len(decoder_channels)]
        self.blocks = nn.ModuleList(
            DecoderBlock(block_in, skip, block_out)
            for block_in, skip, block_out in zip(in_channels, skips, decoder_channels, strict=True)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x, *skips = reversed(features)
        for block, skip in zip(self.blocks, [*skips, None], strict=False):
            x = block(x, skip)
        return x


def build_unet(
    encoder_channels: Sequence[int],
    num_classes: int,
    width_multiplier: float,
    head_stride: int = 1,
) -> tuple[UnetDecoder, nn.Module]:
    """The decoder and its head, a 3x3 conv to the class logits.

    ``head_stride`` 1: the head works at full resolution (as smp). 2 or 4: the decoder stops one
    or two blocks earlier and the head's logits are upsampled bilinearly to full resolution. The
    full-resolution block runs on a few channels that pruning cannot narrow (8 at width 0.5),
    over every pixel of the strip: it sets the floor of a pruned net's latency.
    """
    if head_stride not in HEAD_STRIDES:
        raise ValueError(f"head_stride must be one of {HEAD_STRIDES}, got {head_stride}")
    blocks = len(DECODER_CHANNELS) - HEAD_STRIDES.index(head_stride)
    decoder_channels = [scale_channels(c, width_multiplier) for c in DECODER_CHANNELS[:blocks]]
    conv = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
    if head_stride == 1:
        return UnetDecoder(encoder_channels, decoder_channels), conv
    upsample = nn.Upsample(scale_factor=head_stride, mode="bilinear", align_corners=False)
    return UnetDecoder(encoder_channels, decoder_channels), nn.Sequential(conv, upsample)
