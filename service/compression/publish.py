"""Publish a compression job's kept step through the shared path (``publish_checked``): tuned
on validation, scored on the held-out split beside its source, exported with parity on
validation images, both ONNX models timed side by side, lineage pointing at the source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from service.compression.config import CompressionConfig
from service.compression.latency import measure_side_by_side
from service.evaluation.run import Predictor, evaluate
from service.host import machine_description
from service.inference.runtime import OnnxSegmenter
from service.nets import Architecture, SegmentationModel, record_layer_shapes
from service.store import ONNX_FILE, Lineage, Manifest, ModelStore
from service.training.predict import torch_predictor
from service.training.publish import CheckedVersion, publish_checked

CANDIDATE_ALIAS = "candidate"
CANDIDATE_DIR = "candidate"


def publish_candidate(
    model: SegmentationModel,
    *,
    source: SegmentationModel,
    source_manifest: Manifest,
    store: ModelStore,
    config: CompressionConfig,
    work_dir: Path,
    device: torch.device,
    guard: Callable[[Predictor], Predictor],
    baseline: dict[str, int | float],
) -> Manifest:
    """Publish ``model`` (the kept step) as the next version of the source's model; the caller
    points the alias ``candidate`` at it.

    ``guard`` wraps every torch predictor (the job checks for cancellation per batch);
    ``baseline`` holds the source's ``params`` and ``macs``.
    """
    spec = source_manifest.input
    source_version = store.load(source_manifest.name, source_manifest.version)

    def against_source(checked: CheckedVersion) -> dict[str, Any]:
        source_scores = evaluate(
            guard(torch_predictor(source, device)),
            checked.held_out,
            spec,
            source_manifest.postprocess,
            progress=False,
        )
        latency = measure_side_by_side(
            {
                "source": OnnxSegmenter(source_version.file(ONNX_FILE)),
                "candidate": checked.exported.onnx_model,
            },
            spec,
            repeats=config.latency_repeats,
        )
        return {
            "latency": {
                "onnxruntime_cpu": latency["candidate"],
                "source_onnxruntime_cpu": latency["source"],
                "speedup": latency["source"]["median_ms"] / latency["candidate"]["median_ms"],
                "measured": "source and candidate in one run, calls interleaved, same batch",
                "machine": machine_description(),
            },
            "source": {
                "version": source_manifest.version,
                "params": baseline["params"],
                "macs": baseline["macs"],
                **{key: source_scores[key] for key in ("dice", "dice_per_class", "dice_nonempty")},
            },
            "dice_drop_points": (source_scores["dice"] - checked.scores["dice"]) * 100,
            "macs_reduction": 1 - checked.macs / baseline["macs"],
            "params_reduction": 1 - checked.params / baseline["params"],
        }

    source_arch = Architecture.from_dict(source_manifest.architecture.model_dump())
    folder = work_dir / CANDIDATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return publish_checked(
        model,
        guard(torch_predictor(model, device)),
        dataset=config.dataset,
        spec=spec,
        classes=source_manifest.classes,
        architecture=replace(source_arch, layer_shapes=record_layer_shapes(model)),
        lineage=Lineage(
            parent_version=source_manifest.version,
            job_id=config.job_id,
            method=config.method,
            settings=config.settings(),
        ),
        store=store,
        name=source_manifest.name,
        folder=folder,
        extra_metrics=against_source,
    )
