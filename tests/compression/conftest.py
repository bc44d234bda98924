"""The compression tests prune ``source_store`` (tests/conftest.py: a tiny U-Net published on
synthetic strips, shared with the job tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.store import ModelStore

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

SOURCE_MODEL = "tiny"


@pytest.fixture
def store(source_store: ModelStore, tmp_path: Path) -> ModelStore:
    """A private copy of the source store, for a test that publishes."""
    return ModelStore(shutil.copytree(source_store.root, tmp_path / "store"))
