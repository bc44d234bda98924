"""Tiny model versions for the API tests, published into a temporary store.

``probe``: a 1x1 convolution whose class 1 fires exactly on bright pixels (> 200) and class 3
on dark ones (< 20), so tests know precisely which masks must come back. ``unet-tiny``: the real
U-Net/ResNet-18 at width 0.125, randomly initialised, to serve a real architecture.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from service.nets import Architecture, build_model
from service.store import (
    ArchitectureSpec,
    ClassPostprocess,
    DefectClassSpec,
    InputSpec,
    Lineage,
    ManifestDraft,
    Metrics,
    ModelStore,
)
from service.training.export import export_onnx
from service.training.publish import ONNX_FILE

HEIGHT, WIDTH = 256, 1600
BRIGHT, DARK = 200, 20
CLASSES = [
    DefectClassSpec(id=k, name=n) for k, n in enumerate(("pits", "crack", "scratch", "scale"), 1)
]
MIN_AREA = 4


def _normalised(pixel: float) -> float:
    return (pixel / 255.0 - 0.5) / 0.25


def probe_net() -> nn.Module:
    conv = nn.Conv2d(1, 4, kernel_size=1)
    gain = 40.0
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-20.0)
        conv.weight[0, 0, 0, 0] = gain
        conv.bias[0] = -gain * _normalised(BRIGHT + 0.5)
        conv.weight[2, 0, 0, 0] = -gain
        conv.bias[2] = gain * _normalised(DARK - 0.5)
    return conv.eval()


def _publish(store: ModelStore, name: str, net: nn.Module, arch: ArchitectureSpec) -> None:
    spec = InputSpec(height=HEIGHT, width=WIDTH, channels=1)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / ONNX_FILE
        with warnings.catch_warnings():  # torch's notice about its legacy exporter
            warnings.simplefilter("ignore", DeprecationWarning)
            export_onnx(net, spec, onnx_path)
        draft = ManifestDraft(
            classes=CLASSES,
            input=spec,
            postprocess=[
                ClassPostprocess(class_id=c.id, threshold=0.5, min_area=MIN_AREA) for c in CLASSES
            ],
            architecture=arch,
            metrics=Metrics(params=sum(p.numel() for p in net.parameters()), macs=0, dice=0.5),
            lineage=Lineage(method="test", settings={"purpose": name}),
        )
        manifest = store.publish(name, draft, {ONNX_FILE: onnx_path})
    store.set_alias(name, "production", manifest.version)


def publish_test_models(root: Path) -> ModelStore:
    store = ModelStore(root)
    probe_arch = ArchitectureSpec(family="probe", encoder="none", in_channels=1, num_classes=4)
    _publish(store, "probe", probe_net(), probe_arch)
    torch.manual_seed(0)
    arch = Architecture("unet", "resnet18", in_channels=1, num_classes=4, width_multiplier=0.125)
    _publish(store, "unet-tiny", build_model(arch).eval(), ArchitectureSpec(**arch.to_dict()))
    return store
