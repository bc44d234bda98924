from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.store import ModelStore

TINY_SOURCE_MODEL = "tiny"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository; tests that need it skip clearly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic strips in Severstal format (a dataset folder named ``synthetic``)."""
    from service.data.synthetic import generate_synthetic

    folder = tmp_path_factory.mktemp("data_root") / "synthetic"
    return generate_synthetic(folder, n=12, seed=5, progress=False)


@pytest.fixture(scope="session")
def source_store(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store holding a 1-epoch width-0.125 U-Net trained on ``synthetic_root`` as ``tiny`` v1
    (weights and ONNX), alias production: the source the compression and job tests prune.

    Published directly rather than with publish_run, whose tuning and latency runs these tests
    do not need. Tests that publish work on a copy of it.
    """
    pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    from safetensors.torch import load_file

    from service.data.synthetic import SYNTHETIC_CLASSES
    from service.nets import Architecture, build_model, count_params_and_macs
    from service.store import (
        ArchitectureSpec,
        ClassPostprocess,
        DefectClassSpec,
        InputSpec,
        Lineage,
        ManifestDraft,
        Metrics,
    )
    from service.training.export import export_onnx
    from service.training.publish import ONNX_FILE, WEIGHTS_FILE
    from service.training.train import BEST_WEIGHTS_FILE, RUN_FILE, TrainConfig, train

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
    manifest = store.publish(TINY_SOURCE_MODEL, draft, files)
    store.set_alias(TINY_SOURCE_MODEL, "production", manifest.version)
    return store
