"""A torch model as a numpy predictor, so evaluation code is shared with ONNX Runtime."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from service.evaluation.run import Predictor
from service.inference.outputs import Prediction, split_prediction


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error, not a fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r}: choose auto, cpu or cuda")
    return torch.device(requested)


def torch_predictor(model: nn.Module, device: torch.device) -> Predictor:
    model.eval().to(device)

    @torch.no_grad()
    def predict(batch: np.ndarray) -> Prediction:
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits, presence = split_prediction(model(torch.from_numpy(batch).to(device)))
        if presence is None:
            return logits.float().cpu().numpy()
        return logits.float().cpu().numpy(), presence.float().cpu().numpy()

    return predict
