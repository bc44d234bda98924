"""What a segmentation model returns for a batch, from torch or from ONNX Runtime."""

from __future__ import annotations

import numpy as np

Prediction = np.ndarray | tuple[np.ndarray, np.ndarray]
"""(N, classes, H, W) logits, or those and (N, classes) presence logits (a gated model)."""


def split_prediction(prediction: Prediction) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits, presence logits or None) of either kind of prediction."""
    if isinstance(prediction, tuple):
        return prediction
    return prediction, None
