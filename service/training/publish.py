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
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from service.data.catalog import evaluation_split, open_dataset
from service.evaluation.run import evaluate, tune_postprocess
from service.inference.preprocess import padded_size
from service.inference.runtime import OnnxSegmenter
from service.nets import Architecture, build_model, count_params_and_macs
from service.store import (
    ArchitectureSpec,
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
from service.training.train import BEST_WEIGHTS_FILE, RUN_FILE

PARITY_IMAGES = 8
WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"


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
    model.cpu()
    with tempfile.TemporaryDirectory() as tmp:
        weights_path, onnx_path = Path(tmp) / WEIGHTS_FILE, Path(tmp) / ONNX_FILE
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights_path))
        export_onnx(model, spec, onnx_path)
        onnx_model = OnnxSegmenter(onnx_path)
        cpu_predictor = torch_predictor(model, torch.device("cpu"))
        parity_images = [held_out[i].image for i in range(min(PARITY_IMAGES, len(held_out)))]
        parity = check_parity(cpu_predictor, onnx_model, parity_images, spec, rules)
        params, macs = count_params_and_macs(model, *padded_size(spec.height, spec.width))
        metrics = Metrics(
            params=params,
            macs=macs,
            evaluated_on=f"{dataset_spec} {split} split ({scores['images']} images)",
            validation_dice_tuned={
                str(r.class_id): d for r, d in zip(rules, tuned_val_dice, strict=True)
            },
            parity=parity,
            latency={
                "onnxruntime_cpu": measure_latency_ms(onnx_model, spec),
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
        manifest = store.publish(
            model_name, draft, {WEIGHTS_FILE: weights_path, ONNX_FILE: onnx_path}
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
