"""A tiny published source version on synthetic strips, shared by the compression tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from service.data.synthetic import generate_synthetic
from service.store import ModelStore
from service.training.publish import publish_run
from service.training.train import TrainConfig, train

SOURCE_MODEL = "tiny"


@pytest.fixture(scope="package")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n=12, seed=5, progress=False)


@pytest.fixture(scope="package")
def source_store(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store holding a 1-epoch width-0.125 U-Net as ``tiny`` v1, alias production.

    Tests that publish copy it first (``store`` below), so each sees only its own versions.
    """
    run_dir = tmp_path_factory.mktemp("source") / "run"
    train(
        TrainConfig(
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
    )
    store = ModelStore(tmp_path_factory.mktemp("store"))
    publish_run(run_dir, store, SOURCE_MODEL, alias="production", device="cpu", progress=False)
    return store


@pytest.fixture
def store(source_store: ModelStore, tmp_path: Path) -> ModelStore:
    """A private copy of the source store, for a test that publishes."""
    return ModelStore(shutil.copytree(source_store.root, tmp_path / "store"))
