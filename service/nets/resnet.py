"""ResNet and ResNeXt encoders for the segmentation nets, in plain torch.

Module names follow torchvision (conv1, bn1, layer1..layer4, downsample.0/1), so state dicts line
up with the usual ResNet checkpoints. Every channel count is scaled by a width multiplier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

STAGE_PLANES = (64, 128, 256, 512)
STEM_CHANNELS = 64


def scale_channels(channels: float, multiplier: float, divisor: int = 8) -> int:
    """Scale a channel count and round it to a multiple of `divisor` (timm's make_divisible).

    Rounds to the nearest multiple, never below one `divisor`, and never more than 10% below the
    exact value, so narrow nets do not lose a whole step of width to rounding.
    """
    exact = channels * multiplier
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return rounded


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        groups=groups,
        bias=False,
    )
    return conv, nn.BatchNorm2d(out_channels)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The 1x1 projection of a block whose input and output shapes differ, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride=stride))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34); `mid_channels` is the inner one."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError("BasicBlock has no grouped conv; use Bottleneck for ResNeXt")
        self.conv1, self.bn1 = conv_bn(in_channels, mid_channels, 3, stride=stride)
        self.conv2, self.bn2 = conv_bn(mid_channels, out_channels, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, out_channels, stride)

    @property
    def out_channels(self) -> int:
        return self.bn2.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, with a residual connection."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_channels, mid_channels, 1)
        self.conv2, self.bn2 = conv_bn(mid_channels, mid_channels, 3, stride=stride, groups=groups)
        self.conv3, self.bn3 = conv_bn(mid_channels, out_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, out_channels, stride)

    @property
    def out_channels(self) -> int:
        return self.bn3.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block,
    in_channels: int,
    mid_channels: int,
    out_channels: int,
    depth: int,
    stride: int,
    groups: int,
) -> nn.Sequential:
    """`depth` blocks; the first one changes stride and width, the rest keep them."""
    blocks = [block(in_channels, mid_channels, out_channels, stride, groups)]
    blocks += [block(out_channels, mid_channels, out_channels, 1, groups) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class ResNetEncoder(nn.Module):
    """A ResNet without its classifier, returning the features the decoders need.

    forward returns [stem (/2), layer1 (/4), layer2 (/8), layer3 (/16), layer4 (/32)].
    """

    def __init__(self, in_channels: int, stem_channels: int, stages: list[nn.Sequential]) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_channels, stem_channels, 7, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    @property
    def out_channels(self) -> list[int]:
        """Channels of the five features, read from the modules, so still true after pruning."""
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        return [self.bn1.num_features, *(stage[-1].out_channels for stage in stages)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        layer1 = self.layer1(self.maxpool(stem))
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        return [stem, layer1, layer2, layer3, self.layer4(layer3)]


@dataclass(frozen=True)
class ResNetConfig:
    """What tells the variants apart. A stage's inner width: planes * base_width / 64 * groups."""

    block: Block
    layers: tuple[int, int, int, int]
    groups: int = 1
    base_width: int = 64


def build_resnet(config: ResNetConfig, in_channels: int, width_multiplier: float) -> ResNetEncoder:
    """Build the encoder with every channel count scaled by `width_multiplier`.

    Widths are rounded to multiples of 8. A grouped conv keeps its cardinality (32 for ResNeXt)
    at every multiplier: its width is rounded to a multiple of lcm(8, groups), hence at least one
    channel per group (a narrow ResNeXt's 3x3 convs become depthwise rather than losing groups).
    """
    expansion = 4 if config.block is Bottleneck else 1
    group_divisor = math.lcm(8, config.groups)
    stem_channels = scale_channels(STEM_CHANNELS, width_multiplier)
    stages = []
    stage_in = stem_channels
    for index, (planes, depth) in enumerate(zip(STAGE_PLANES, config.layers, strict=True)):
        mid = scale_channels(
            planes * config.base_width / 64 * config.groups, width_multiplier, group_divisor
        )
        out = scale_channels(planes * expansion, width_multiplier)
        stride = 1 if index == 0 else 2
        stages.append(make_stage(config.block, stage_in, mid, out, depth, stride, config.groups))
        stage_in = out
    return ResNetEncoder(in_channels, stem_channels, stages)


def resnet18(in_channels: int = 3, width_multiplier: float = 1.0) -> ResNetEncoder:
    config = ResNetConfig(block=BasicBlock, layers=(2, 2, 2, 2))
    return build_resnet(config, in_channels, width_multiplier)


def resnet34(in_channels: int = 3, width_multiplier: float = 1.0) -> ResNetEncoder:
    config = ResNetConfig(block=BasicBlock, layers=(3, 4, 6, 3))
    return build_resnet(config, in_channels, width_multiplier)


def resnet50(in_channels: int = 3, width_multiplier: float = 1.0) -> ResNetEncoder:
    config = ResNetConfig(block=Bottleneck, layers=(3, 4, 6, 3))
    return build_resnet(config, in_channels, width_multiplier)


def resnext50_32x4d(in_channels: int = 3, width_multiplier: float = 1.0) -> ResNetEncoder:
    config = ResNetConfig(block=Bottleneck, layers=(3, 4, 6, 3), groups=32, base_width=4)
    return build_resnet(config, in_channels, width_multiplier)
