"""A tiny published source version on synthetic strips, shared by the compression tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from safetensors.torch import load_file

from service.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from service.nets import Architecture, build_model, count_params_and_macs
from service.store import (
    ArchitectureSpec,
    ClassPostprocess,
    DefectClassSpec,
    InputSpec,
    Lineage,
    ManifestDraft,
    Metrics,
    ModelStore,
)
from service.training.export import export_onnx
from service.training.publish import ONNX_FILE, WEIGHTS_FILE
from service.training.train import BEST_WEIGHTS_FILE, RUN_FILE, TrainConfig, train

SOURCE_MODEL = "tiny"


@pytest.fixture(scope="package")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n=12, seed=5, progress=False)


@pytest.fixture(scope="package")
def source_store(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store holding a 1-epoch width-0.125 U-Net as ``tiny`` v1, alias production.

    Published directly rather than with publish_run, whose tuning and latency runs the
    compression tests do not need. Tests that publish work on a copy (``store`` below).
    """
    run_dir = tmp_path_factory.mktemp("source") / "run"
    config = TrainConfig(
        dataset=str(synthetic_root),
        out_dir=run_dir,
        width_multiplier=0.125,
        epochs=1,
        batch_size=4,
        crop=(128, 256),
        lr=3e-3,
        device="cpu",
        progress=False,
    )
    train(config)
    run = json.loads((run_dir / RUN_FILE).read_text())
    model = build_model(Architecture.from_dict(run["architecture"]))
    model.load_state_dict(load_file(str(run_dir / BEST_WEIGHTS_FILE)))
    spec = InputSpec.model_validate(run["input"])
    export_onnx(model, spec, run_dir / ONNX_FILE)
    params, macs = count_params_and_macs(model, spec.height, spec.width)
    draft = ManifestDraft(
        classes=[DefectClassSpec(id=c.id, name=c.name) for c in SYNTHETIC_CLASSES],
        input=spec,
        postprocess=[
            ClassPostprocess(class_id=c.id, threshold=0.5, min_area=0) for c in SYNTHETIC_CLASSES
        ],
        architecture=ArchitectureSpec(**run["architecture"]),
        metrics=Metrics(params=params, macs=macs),
        lineage=Lineage(method="train", settings=config.to_json()),
    )
    store = ModelStore(tmp_path_factory.mktemp("store"))
    files = {WEIGHTS_FILE: run_dir / BEST_WEIGHTS_FILE, ONNX_FILE: run_dir / ONNX_FILE}
    manifest = store.publish(SOURCE_MODEL, draft, files)
    store.set_alias(SOURCE_MODEL, "production", manifest.version)
    return store


@pytest.fixture
def store(source_store: ModelStore, tmp_path: Path) -> ModelStore:
    """A private copy of the source store, for a test that publishes."""
    return ModelStore(shutil.copytree(source_store.root, tmp_path / "store"))
