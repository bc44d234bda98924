"""What a segmentation model returns for a batch, from torch or from ONNX Runtime."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Prediction = np.ndarray | tuple[np.ndarray, np.ndarray]
"""(N, classes, H, W) logits, or those and (N, classes) presence logits (a gated model)."""

Output = TypeVar("Output")
"""A numpy array (ONNX Runtime, predictors) or a torch tensor (a net's forward)."""


def split_prediction(prediction: Output | tuple[Output, Output]) -> tuple[Output, Output | None]:
    """(logits, presence logits or None) of either kind of model's output."""
    if isinstance(prediction, tuple):
        return prediction
    return prediction, None
