"""When ONNX Runtime's intra-op threads busy-wait for work (see ``OnnxSegmenter``): a module of
its own, so that the settings name the modes without importing ONNX Runtime."""

from __future__ import annotations

from typing import Literal, get_args

SpinMode = Literal["off", "during_runs", "on"]
SPIN_MODES: tuple[SpinMode, ...] = get_args(SpinMode)
