"""Regenerate the committed test models in tests/data/models/ (needs torch; the tests never run
this): ``.venv/bin/python -m tests.make_tiny_models``.

What each model is: tests/tiny_models.py. The nets are built the same way every time (fixed
weights, seed 0), so a new export differs from the committed one only by the exporter's version.
"""

from __future__ import annotations

import warnings

import torch
from safetensors.torch import save_file
from torch import nn

from service.nets import Architecture, build_model
from service.store import ONNX_FILE, WEIGHTS_FILE, InputSpec
from service.training.export import export_onnx
from tests.tiny_models import BRIGHT, COMMITTED, DARK, HEIGHT, MODELS, WIDTH


def _normalised(pixel: float) -> float:
    return (pixel / 255.0 - 0.5) / 0.25


def probe_net() -> nn.Module:
    """Class 1 (channel 0) above BRIGHT, class 3 (channel 2) below DARK, nothing else."""
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


def unet_tiny_net() -> nn.Module:
    (spec,) = (model.architecture for model in COMMITTED if model.name == "unet-tiny")
    torch.manual_seed(0)
    return build_model(Architecture.from_dict(spec.model_dump())).eval()


NETS = {"probe": probe_net, "unet-tiny": unet_tiny_net}


def main() -> None:
    MODELS.mkdir(parents=True, exist_ok=True)
    spec = InputSpec(height=HEIGHT, width=WIDTH, channels=1)
    for model in COMMITTED:
        net = NETS[model.name]()
        params = sum(p.numel() for p in net.parameters())
        assert params == model.params, f"{model.name}: {params} parameters, not {model.params}"
        files = model.files()
        with warnings.catch_warnings():  # torch's notice about its legacy exporter
            warnings.simplefilter("ignore", DeprecationWarning)
            export_onnx(net, spec, files[ONNX_FILE])
        if model.with_weights:
            state = {name: tensor.contiguous() for name, tensor in net.state_dict().items()}
            save_file(state, str(files[WEIGHTS_FILE]))
        for path in files.values():
            print(f"{path.relative_to(MODELS.parents[2])}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
