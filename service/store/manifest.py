"""The manifest of a model version: everything needed to serve, rebuild and audit it.

Pydantic models so that a hand-edited or truncated manifest fails loudly at load time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefectClassSpec(_Strict):
    id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=64, description="fits the defects' class_name")


class Normalisation(_Strict):
    """Pixel values are scaled to [0, 1], then ``(x - mean) / std``."""

    mean: float = 0.5
    std: float = 0.25


class InputSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: int = Field(ge=1, le=3)
    normalisation: Normalisation = Normalisation()


class ClassPostprocess(_Strict):
    """A class is reported when its pixels above ``threshold`` cover at least ``min_area`` and,
    for a model with a presence head, its presence probability is at least ``gate``."""

    class_id: int = Field(ge=1)
    threshold: float = Field(gt=0.0, lt=1.0)
    min_area: int = Field(ge=0)
    gate: float | None = Field(default=None, ge=0.0, lt=1.0)


class ArchitectureSpec(_Strict):
    family: str
    encoder: str
    in_channels: int
    num_classes: int
    width_multiplier: float = 1.0
    layer_shapes: dict[str, list[int]] | None = None
    presence_head: bool = False
    """The ONNX graph has a second output, (N, classes) presence logits: the gate's scores."""
    head_stride: int = 1
    """U-Net: the resolution its head classifies at (1 full, 2 or 4: logits upsampled)."""
    decoder_width: float | None = None
    """The decoder's width multiplier where it differs from the encoder's (None: the same)."""


class Metrics(BaseModel):
    """Known fields are typed; evaluation may add more (per-split details, parity, latency)."""

    model_config = ConfigDict(extra="allow")

    params: int
    macs: int
    dice: float | None = None
    dice_per_class: dict[str, float] = {}
    dice_nonempty: float | None = None
    miou: float | None = None
    miou_with_background: float | None = None
    evaluated_on: str | None = None


class Lineage(_Strict):
    parent_version: int | None = None
    job_id: str | None = None
    method: str | None = None
    settings: dict[str, Any] = {}


class ManifestDraft(_Strict):
    """What a publisher supplies; the store adds name, version, creation time and hashes."""

    classes: list[DefectClassSpec]
    input: InputSpec
    postprocess: list[ClassPostprocess]
    architecture: ArchitectureSpec
    precision: Literal["float32", "int8"] = "float32"
    """The arithmetic of model.onnx: int8 is a QDQ graph quantized from a float parent (the
    architecture is the parent's; an int8 version has no weights to prune)."""
    metrics: Metrics
    lineage: Lineage = Lineage()


class Manifest(ManifestDraft):
    name: str
    version: int = Field(ge=1)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    files: dict[str, str]
