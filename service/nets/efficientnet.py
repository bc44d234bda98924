"""EfficientNet-Lite encoders for the segmentation nets, in plain torch.

EfficientNet-Lite is EfficientNet's edge variant: ReLU6 instead of swish, no squeeze-excitation,
the stem and the last stage never scaled. Module names follow the reference implementation
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1``
/ ``_project_conv`` / ``_bn2``), so the ImageNet state dicts of the ``efficientnet-liteN-pytorch-
model`` packages line up tensor for tensor (see ``service.nets.pretrained``).

Convolutions pad symmetrically (``kernel // 2``), not TensorFlow's "same" padding the weights
were trained with: at stride 2 that shifts a map by half a pixel, which fine-tuning absorbs, and
the graph stays a plain Conv that Torch-Pruning, ONNX and every runtime take as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from service.nets.resnet import scale_channels

STEM_CHANNELS = 32
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
"""TensorFlow's decay 0.99, in torch's convention."""


@dataclass(frozen=True)
class StageConfig:
    """One stage of MBConv blocks: the first changes stride and width, the rest keep them."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


LITE_STAGES = (
    StageConfig(1, 3, 1, 1, 16),
    StageConfig(2, 3, 2, 6, 24),
    StageConfig(2, 5, 2, 6, 40),
    StageConfig(3, 3, 2, 6, 80),
    StageConfig(3, 5, 1, 6, 112),
    StageConfig(4, 5, 2, 6, 192),
    StageConfig(1, 3, 1, 6, 320),
)
FEATURE_STAGES = (0, 1, 2, 4, 6)
"""The stages whose last block gives the features at strides 2, 4, 8, 16 and 32."""


def conv_bn(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(
        in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False
    )
    return conv, nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (absent when the ratio is 1), depthwise k x k, 1x1 project,
    with a residual connection when stride and width allow."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int
    ) -> None:
        super().__init__()
        inner = in_channels * expand
        if expand != 1:
            self._expand_conv, self._bn0 = conv_bn(in_channels, inner, 1)
        self._depthwise_conv, self._bn1 = conv_bn(inner, inner, kernel, stride, groups=inner)
        self._project_conv, self._bn2 = conv_bn(inner, out_channels, 1)
        self.relu = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_channels == out_channels

    @property
    def out_channels(self) -> int:
        return self._bn2.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = self.relu(self._bn0(self._expand_conv(out)))
        out = self.relu(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite without its classifier head (``_conv_head``, ``_bn1``, ``_fc``),
    returning the features the decoders need at strides 2, 4, 8, 16 and 32."""

    def __init__(self, in_channels: int, blocks: list[MBConvBlock], feature_blocks: list[int]):
        super().__init__()
        self._conv_stem, self._bn0 = conv_bn(in_channels, STEM_CHANNELS, 3, stride=2)
        self.relu = nn.ReLU6(inplace=True)
        self._blocks = nn.ModuleList(blocks)
        self.feature_blocks = feature_blocks

    @property
    def out_channels(self) -> list[int]:
        """Channels of the five features, read from the modules, so still true after pruning."""
        return [self._blocks[index].out_channels for index in self.feature_blocks]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self._bn0(self._conv_stem(x)))
        features = []
        wanted = iter(self.feature_blocks)
        next_feature = next(wanted)
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index == next_feature:
                features.append(x)
                next_feature = next(wanted, -1)
        return features


@dataclass(frozen=True)
class LiteConfig:
    """A variant: EfficientNet's width and depth coefficients (Lite keeps the first and last
    stages' depth and the stem's width fixed)."""

    width: float
    depth: float


def build_efficientnet_lite(
    config: LiteConfig, in_channels: int, width_multiplier: float
) -> EfficientNetLiteEncoder:
    """The encoder with block widths scaled by the variant's width times ``width_multiplier``
    (1.0 is the shape the ImageNet weights have)."""
    width = config.width * width_multiplier
    blocks: list[MBConvBlock] = []
    feature_blocks = []
    block_in = STEM_CHANNELS
    last = len(LITE_STAGES) - 1
    for index, stage in enumerate(LITE_STAGES):
        fixed = index in (0, last)
        repeats = stage.repeats if fixed else math.ceil(stage.repeats * config.depth)
        out = scale_channels(stage.out_channels, width)
        for repeat in range(repeats):
            stride = stage.stride if repeat == 0 else 1
            blocks.append(MBConvBlock(block_in, out, stage.kernel, stride, stage.expand))
            block_in = out
        if index in FEATURE_STAGES:
            feature_blocks.append(len(blocks) - 1)
    return EfficientNetLiteEncoder(in_channels, blocks, feature_blocks)


def efficientnet_lite0(
    in_channels: int = 3, width_multiplier: float = 1.0
) -> EfficientNetLiteEncoder:
    return build_efficientnet_lite(LiteConfig(1.0, 1.0), in_channels, width_multiplier)


def efficientnet_lite1(
    in_channels: int = 3, width_multiplier: float = 1.0
) -> EfficientNetLiteEncoder:
    return build_efficientnet_lite(LiteConfig(1.0, 1.1), in_channels, width_multiplier)


def efficientnet_lite2(
    in_channels: int = 3, width_multiplier: float = 1.0
) -> EfficientNetLiteEncoder:
    return build_efficientnet_lite(LiteConfig(1.1, 1.2), in_channels, width_multiplier)
