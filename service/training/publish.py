"""Turn a finished training run into a published model version.

Tunes per-class thresholds and minimum areas on the validation split, reports metrics on the
held-out split (test where the dataset has one), exports ONNX, checks parity on real images,
measures latency, and writes the version with its manifest through the model store.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from service.data.base import SegmentationDataset
from service.data.catalog import evaluation_split, open_dataset
from service.evaluation.run import evaluate, tune_postprocess
from service.inference.preprocess import padded_size
from service.inference.runtime import OnnxSegmenter
from service.nets import Architecture, build_model, count_params_and_macs
from service.store import (
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
WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class VersionFiles:
    """A version's files, written but not yet published, with its checked ONNX session."""

    files: dict[str, Path]
    onnx_model: OnnxSegmenter
    parity: dict[str, float | int]


def write_version_files(
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


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores"


def publish_run(
    run_dir: Path,
    store: ModelStore,
    model_name: str,
    alias: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Manifest:
    run = json.loads((run_dir / RUN_FILE).read_text())
    arch = Architecture.from_dict(run["architecture"])
    model = build_model(arch)
    model.load_state_dict(load_file(str(run_dir / BEST_WEIGHTS_FILE)), strict=True)
    model.eval()
    spec = InputSpec.model_validate(run["input"])
    dataset_spec = run["config"]["dataset"]
    predictor = torch_predictor(model, resolve_device(device))
    rules, tuned_val_dice = tune_postprocess(
        predictor, open_dataset(dataset_spec, "val"), spec, progress=progress
    )
    split = evaluation_split(dataset_spec)
    held_out = open_dataset(dataset_spec, split)
    scores = evaluate(predictor, held_out, spec, rules, progress=progress)
    with tempfile.TemporaryDirectory() as tmp:
        exported = write_version_files(model, spec, rules, held_out, Path(tmp))
        cpu_predictor = torch_predictor(model, torch.device("cpu"))
        params, macs = count_params_and_macs(model, *padded_size(spec.height, spec.width))
        metrics = Metrics(
            params=params,
            macs=macs,
            evaluated_on=f"{dataset_spec} {split} split ({scores['images']} images)",
            validation_dice_tuned={
                str(r.class_id): d for r, d in zip(rules, tuned_val_dice, strict=True)
            },
            parity=exported.parity,
            latency={
                "onnxruntime_cpu": measure_latency_ms(exported.onnx_model, spec),
                "torch_cpu": measure_latency_ms(cpu_predictor, spec),
                "machine": machine_description(),
            },
            training={k: run[k] for k in ("best_epoch", "best_val_dice_nonempty", "seconds")},
            **scores,
        )
        draft = ManifestDraft(
            classes=[DefectClassSpec(**c) for c in run["classes"]],
            input=spec,
            postprocess=rules,
            architecture=ArchitectureSpec(**arch.to_dict()),
            metrics=metrics,
            lineage=Lineage(method="train", settings=run["config"]),
        )
        manifest = store.publish(model_name, draft, exported.files)
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
