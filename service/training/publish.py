"""Publish a net as a model version: the one path that training and compression share.

``publish_checked`` tunes each class's threshold and minimum area on the validation split,
scores the held-out split (test where the dataset has one), saves the weights and the ONNX
export, checks ONNX Runtime against torch on validation images, adds the caller's own
measurements (latency, comparisons with a source) and writes the version through the store.
``publish_run`` takes that path for a finished training run, ``service.compression.publish``
for a compression job's kept step.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from service.data.base import SegmentationDataset
from service.data.catalog import evaluation_split, open_dataset
from service.evaluation.metrics import SCORE_KEYS
from service.evaluation.run import Predictor, evaluate, tune_postprocess
from service.host import machine_description
from service.inference.preprocess import padded_size
from service.inference.runtime import OnnxSegmenter
from service.nets import Architecture, build_model, count_params_and_macs
from service.store import (
    ONNX_FILE,
    WEIGHTS_FILE,
    ArchitectureSpec,
    ClassPostprocess,
    DefectClassSpec,
    InputSpec,
    Lineage,
    Manifest,
    ManifestDraft,
    Metrics,
    ModelStore,
)
from service.training.export import check_parity, export_onnx, measure_latency_ms
from service.training.predict import resolve_device, torch_predictor
from service.training.train import BEST_WEIGHTS_FILE, RUN_FILE, cpu_state

PARITY_IMAGES = 8
"""Validation images on which ONNX Runtime must reproduce torch before a version is written."""


@dataclass(frozen=True)
class VersionFiles:
    """A version's files, written but not yet published, with its checked ONNX session."""

    files: dict[str, Path]
    onnx_model: OnnxSegmenter
    parity: dict[str, float | int]


@dataclass(frozen=True)
class CheckedVersion:
    """A net that passed the shared checks, not yet published: what a caller measures on."""

    rules: list[ClassPostprocess]
    held_out: SegmentationDataset
    scores: dict[str, Any]
    exported: VersionFiles
    params: int
    macs: int


ExtraMetrics = Callable[[CheckedVersion], dict[str, Any]]
"""The caller's own metrics of a checked version (latency, a comparison with its source)."""


def publish_checked(
    model: torch.nn.Module,
    predictor: Predictor,
    *,
    dataset: str,
    spec: InputSpec,
    classes: Sequence[DefectClassSpec],
    architecture: Architecture,
    lineage: Lineage,
    store: ModelStore,
    name: str,
    folder: Path,
    extra_metrics: ExtraMetrics,
    progress: bool = False,
) -> Manifest:
    """Tune, score, package and publish ``model`` as the next version of ``name``.

    ``predictor`` runs ``model`` where it lives (and may check for cancellation per batch);
    the files are written into ``folder`` (the store copies them) and the parity check runs on
    the CPU, where the API serves. Raises ParityError when ONNX Runtime and torch disagree.
    """
    validation = open_dataset(dataset, "val")
    rules, tuned_dice = tune_postprocess(predictor, validation, spec, progress=progress)
    split = evaluation_split(dataset)
    held_out = open_dataset(dataset, split)
    scores = evaluate(predictor, held_out, spec, rules, progress=progress)
    if any(rule.gate is not None for rule in rules):
        ungated = evaluate(predictor, held_out, spec, rules, progress=progress, gated=False)
        scores["without_gate"] = {key: ungated[key] for key in SCORE_KEYS}
    exported = _write_version_files(model, spec, rules, validation, folder)
    params, macs = count_params_and_macs(model, *padded_size(spec.height, spec.width))
    checked = CheckedVersion(rules, held_out, scores, exported, params, macs)
    metrics = Metrics(
        params=params,
        macs=macs,
        evaluated_on=f"{dataset} {split} split ({scores['images']} images)",
        **scores,
        validation_dice_tuned={
            str(rule.class_id): dice for rule, dice in zip(rules, tuned_dice, strict=True)
        },
        parity=exported.parity,
        **extra_metrics(checked),
    )
    draft = ManifestDraft(
        classes=list(classes),
        input=spec,
        postprocess=rules,
        architecture=ArchitectureSpec(**architecture.to_dict()),
        metrics=metrics,
        lineage=lineage,
    )
    return store.publish(name, draft, exported.files)


def _write_version_files(
    model: torch.nn.Module,
    spec: InputSpec,
    rules: Sequence[ClassPostprocess],
    parity_set: SegmentationDataset,
    folder: Path,
) -> VersionFiles:
    """Save the weights and the ONNX export into ``folder`` and check the export against torch
    on the first real images of ``parity_set`` (raises ParityError when they differ)."""
    model.cpu()
    weights_path, onnx_path = folder / WEIGHTS_FILE, folder / ONNX_FILE
    save_file(cpu_state(model), str(weights_path))
    export_onnx(model, spec, onnx_path)
    onnx_model = OnnxSegmenter(onnx_path)
    images = [parity_set[i].image for i in range(min(PARITY_IMAGES, len(parity_set)))]
    parity = check_parity(
        torch_predictor(model, torch.device("cpu")), onnx_model, images, spec, rules
    )
    return VersionFiles({WEIGHTS_FILE: weights_path, ONNX_FILE: onnx_path}, onnx_model, parity)


def publish_run(
    run_dir: Path,
    store: ModelStore,
    model_name: str,
    alias: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Manifest:
    """Publish a training run's best weights, with ONNX Runtime and torch latency on this CPU."""
    run = json.loads((run_dir / RUN_FILE).read_text())
    arch = Architecture.from_dict(run["architecture"])
    model = build_model(arch)
    model.load_state_dict(load_file(str(run_dir / BEST_WEIGHTS_FILE)), strict=True)
    model.eval()
    spec = InputSpec.model_validate(run["input"])

    def latency_and_training(checked: CheckedVersion) -> dict[str, Any]:
        return {
            "latency": {
                "onnxruntime_cpu": measure_latency_ms(checked.exported.onnx_model, spec),
                "torch_cpu": measure_latency_ms(torch_predictor(model, torch.device("cpu")), spec),
                "machine": machine_description(),
            },
            "training": {
                **{k: run[k] for k in ("best_epoch", "best_val_dice_nonempty", "seconds")},
                "pretrained": run.get("pretrained"),
            },
        }

    with tempfile.TemporaryDirectory() as tmp:
        manifest = publish_checked(
            model,
            torch_predictor(model, resolve_device(device)),
            dataset=run["config"]["dataset"],
            spec=spec,
            classes=[DefectClassSpec(**c) for c in run["classes"]],
            architecture=arch,
            lineage=Lineage(method="train", settings=run["config"]),
            store=store,
            name=model_name,
            folder=Path(tmp),
            extra_metrics=latency_and_training,
            progress=progress,
        )
    if alias:
        store.set_alias(model_name, alias, manifest.version)
    return manifest


def load_version_model(
    store: ModelStore, name: str, ref: int | str
) -> tuple[torch.nn.Module, Manifest]:
    """Rebuild a published version's net (pruned widths included) from safetensors; no pickles."""
    version = store.load(name, ref)
    arch = Architecture.from_dict(version.manifest.architecture.model_dump())
    model = build_model(arch)
    model.load_state_dict(load_file(str(version.file(WEIGHTS_FILE))), strict=True)
    return model.eval(), version.manifest
