"""The segmentation nets: build any family x encoder, rebuild a pruned one, measure its cost.

Every model is a SegmentationModel: `encoder`, `decoder`, `head`, `classifier` (the conv that
emits the class logits) and forward(x) -> logits (N, num_classes, H, W) for H, W divisible by 32.
A model built with a presence head (the classification gate) also has `presence` and returns
(logits, presence logits (N, num_classes)); `service.inference.outputs.split_prediction`
reads either form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from service.architectures import ENCODER_NAMES, FAMILY_NAMES
from service.nets.efficientnet import efficientnet_lite0, efficientnet_lite1, efficientnet_lite2
from service.nets.fpn import build_fpn
from service.nets.resnet import resnet18, resnet34, resnet50, resnext50_32x4d
from service.nets.unet import build_unet

FamilyBuilder = Callable[[Sequence[int], int, float, int], tuple[nn.Module, nn.Module]]
EncoderBuilder = Callable[[int, float], nn.Module]
"""(in_channels, width_multiplier) -> an encoder whose forward returns the five features at
strides 2..32 and whose ``out_channels`` lists their widths."""

FAMILIES: dict[str, FamilyBuilder] = dict(zip(FAMILY_NAMES, (build_unet, build_fpn), strict=True))
ENCODERS: dict[str, EncoderBuilder] = dict(
    zip(
        ENCODER_NAMES,
        (
            resnet18,
            resnet34,
            resnet50,
            resnext50_32x4d,
            efficientnet_lite0,
            efficientnet_lite1,
            efficientnet_lite2,
        ),
        strict=True,
    )
)

SHAPED_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm)


def _check_choice(kind: str, name: str, choices: Mapping[str, object]) -> None:
    if name not in choices:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class Architecture:
    """What a manifest records to rebuild a net: names, sizes and, for a pruned net, its widths.

    `layer_shapes` (from record_layer_shapes) maps module names to their shapes; without it the
    net has the default widths for `width_multiplier`. `decoder_width`: the decoder's and
    head's multiplier where it differs from the encoder's (a pretrained encoder keeps the width
    its weights have, 1.0, under a narrower decoder); None: `width_multiplier`. `head_stride`
    (U-Net only, see `build_unet`): the resolution the head classifies at before its logits
    are upsampled.
    """

    family: str
    encoder: str
    in_channels: int
    num_classes: int
    width_multiplier: float = 1.0
    layer_shapes: dict[str, list[int]] | None = None
    presence_head: bool = False
    head_stride: int = 1
    decoder_width: float | None = None

    @property
    def decoder_multiplier(self) -> float:
        return self.width_multiplier if self.decoder_width is None else self.decoder_width

    def __post_init__(self) -> None:
        _check_choice("family", self.family, FAMILIES)
        _check_choice("encoder", self.encoder, ENCODERS)
        if self.in_channels < 1 or self.num_classes < 1 or self.width_multiplier <= 0:
            raise ValueError("in_channels, num_classes and width_multiplier must be positive")
        if self.decoder_width is not None and self.decoder_width <= 0:
            raise ValueError("decoder_width must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        shapes = data.get("layer_shapes")
        return cls(
            family=data["family"],
            encoder=data["encoder"],
            in_channels=int(data["in_channels"]),
            num_classes=int(data["num_classes"]),
            width_multiplier=float(data.get("width_multiplier", 1.0)),
            layer_shapes=None
            if shapes is None
            else {name: [int(size) for size in shape] for name, shape in shapes.items()},
            presence_head=bool(data.get("presence_head", False)),
            head_stride=int(data.get("head_stride", 1)),
            decoder_width=None
            if data.get("decoder_width") is None
            else float(data["decoder_width"]),
        )


class PresenceHead(nn.Module):
    """Per-class presence logits from the deepest encoder feature: a 1x1 conv to one map per
    class, then its maximum over the image.

    The maximum, not the mean, so a small defect scores as high on a whole 256x1600 strip as on
    the crop it was trained on: the score says "somewhere", whatever the image size.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, deepest: torch.Tensor) -> torch.Tensor:
        return self.classifier(deepest).amax(dim=(2, 3))


class SegmentationModel(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        presence: PresenceHead | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.presence = presence

    @property
    def classifier(self) -> nn.Conv2d:
        """The head's last conv: pruning must leave its outputs (the classes) alone."""
        return [m for m in self.head.modules() if isinstance(m, nn.Conv2d)][-1]

    @property
    def output_layers(self) -> list[nn.Module]:
        """The layers whose outputs are the classes: never pruned."""
        if self.presence is None:
            return [self.classifier]
        return [self.classifier, self.presence.classifier]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        logits = self.head(self.decoder(features))
        if self.presence is None:
            return logits
        return logits, self.presence(features[-1])


def build_model(arch: Architecture) -> SegmentationModel:
    """The net `arch` describes, freshly initialised, with its recorded widths if it has any."""
    encoder = ENCODERS[arch.encoder](arch.in_channels, arch.width_multiplier)
    decoder, head = FAMILIES[arch.family](
        encoder.out_channels, arch.num_classes, arch.decoder_multiplier, arch.head_stride
    )
    presence = (
        PresenceHead(encoder.out_channels[-1], arch.num_classes) if arch.presence_head else None
    )
    model = SegmentationModel(encoder, decoder, head, presence)
    if arch.layer_shapes is not None:
        _apply_layer_shapes(model, arch.layer_shapes)
    return model


def record_layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Conv2d: [in, out, groups]; BatchNorm2d: [features]; GroupNorm: [groups, channels]."""
    return {name: _shape(m) for name, m in model.named_modules() if isinstance(m, SHAPED_LAYERS)}


def _shape(module: nn.Module) -> list[int]:
    if isinstance(module, nn.Conv2d):
        return [module.in_channels, module.out_channels, module.groups]
    if isinstance(module, nn.BatchNorm2d):
        return [module.num_features]
    if isinstance(module, nn.GroupNorm):
        return [module.num_groups, module.num_channels]
    raise TypeError(f"no recorded shape for {type(module).__name__}")


def _reshaped(module: nn.Module, shape: list[int]) -> nn.Module:
    """A fresh layer like `module` (same kernel, stride, eps, ...) but of the recorded shape."""
    if isinstance(module, nn.Conv2d):
        in_channels, out_channels, groups = shape
        return nn.Conv2d(
            in_channels,
            out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    if isinstance(module, nn.BatchNorm2d):
        (num_features,) = shape
        return nn.BatchNorm2d(
            num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
    if isinstance(module, nn.GroupNorm):
        num_groups, num_channels = shape
        return nn.GroupNorm(num_groups, num_channels, eps=module.eps, affine=module.affine)
    raise TypeError(f"cannot reshape {type(module).__name__}")


def _apply_layer_shapes(model: nn.Module, layer_shapes: Mapping[str, list[int]]) -> None:
    """Swap every layer whose recorded shape differs for a fresh one of that shape, in place."""
    modules = dict(model.named_modules())
    for name, shape in layer_shapes.items():
        module = modules.get(name)
        if not isinstance(module, SHAPED_LAYERS):
            raise ValueError(f"recorded layer {name!r} is not a Conv2d/BatchNorm2d/GroupNorm here")
        if _shape(module) != list(shape):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, _reshaped(module, list(shape)))


def count_params_and_macs(
    model: nn.Module, height: int = 256, width: int = 1600
) -> tuple[int, int]:
    """Parameters and multiply-accumulates of one (1, in_channels, height, width) forward pass.

    Torch-Pruning counts on a deep copy in eval mode, so `model` keeps its mode and weights.
    """
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    device = next(model.parameters()).device
    image = torch.zeros(1, first_conv.in_channels, height, width, device=device)
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, image)
    return int(params), int(macs)
