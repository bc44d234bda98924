"""Check the kept step and publish it: tune post-processing on validation, score it and the
source on the held-out split, export ONNX with parity on real validation images, time both
ONNX models side by side, and write the version with its metrics and lineage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from service.compression.config import CompressionConfig
from service.compression.latency import measure_side_by_side
from service.data.catalog import evaluation_split, open_dataset
from service.evaluation.run import Predictor, evaluate, tune_postprocess
from service.inference.preprocess import padded_size
from service.inference.runtime import OnnxSegmenter
from service.nets import Architecture, SegmentationModel, count_params_and_macs, record_layer_shapes
from service.store import ArchitectureSpec, Lineage, Manifest, ManifestDraft, Metrics, ModelStore
from service.training.predict import torch_predictor
from service.training.publish import ONNX_FILE, machine_description, write_version_files

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
    val_set = open_dataset(config.dataset, "val")
    rules, tuned_dice = tune_postprocess(
        guard(torch_predictor(model, device)), val_set, spec, progress=False
    )
    split = evaluation_split(config.dataset)
    held_out = open_dataset(config.dataset, split)
    scores = evaluate(guard(torch_predictor(model, device)), held_out, spec, rules, progress=False)
    source_scores = evaluate(
        guard(torch_predictor(source, device)),
        held_out,
        spec,
        source_manifest.postprocess,
        progress=False,
    )
    folder = work_dir / CANDIDATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    exported = write_version_files(model, spec, rules, val_set, folder)
    source_version = store.load(source_manifest.name, source_manifest.version)
    latency = measure_side_by_side(
        {"source": OnnxSegmenter(source_version.file(ONNX_FILE)), "candidate": exported.onnx_model},
        spec,
        repeats=config.latency_repeats,
    )
    params, macs = count_params_and_macs(model, *padded_size(spec.height, spec.width))
    metrics = Metrics(
        params=params,
        macs=macs,
        evaluated_on=f"{config.dataset} {split} split ({scores['images']} images)",
        **scores,
        validation_dice_tuned={
            str(rule.class_id): dice for rule, dice in zip(rules, tuned_dice, strict=True)
        },
        parity=exported.parity,
        latency={
            "onnxruntime_cpu": latency["candidate"],
            "source_onnxruntime_cpu": latency["source"],
            "speedup": latency["source"]["median_ms"] / latency["candidate"]["median_ms"],
            "measured": "source and candidate in one run, calls interleaved, same batch",
            "machine": machine_description(),
        },
        source={
            "version": source_manifest.version,
            "params": baseline["params"],
            "macs": baseline["macs"],
            **{key: source_scores[key] for key in ("dice", "dice_per_class", "dice_nonempty")},
        },
        dice_drop_points=(source_scores["dice"] - scores["dice"]) * 100,
        macs_reduction=1 - macs / baseline["macs"],
        params_reduction=1 - params / baseline["params"],
    )
    source_arch = Architecture.from_dict(source_manifest.architecture.model_dump())
    arch = replace(source_arch, layer_shapes=record_layer_shapes(model))
    draft = ManifestDraft(
        classes=source_manifest.classes,
        input=spec,
        postprocess=rules,
        architecture=ArchitectureSpec(**arch.to_dict()),
        metrics=metrics,
        lineage=Lineage(
            parent_version=source_manifest.version,
            job_id=config.job_id,
            method=config.method,
            settings=config.settings(),
        ),
    )
    return store.publish(source_manifest.name, draft, exported.files)
