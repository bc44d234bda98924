"""Fixtures every part of the suite shares: the real data, synthetic strips, and the tiny models
(tests/tiny_models.py says what each one is).

The committed models (``model_store``) need no torch; the trained one (``tiny_run``,
``source_store``) does, and every test that uses it is marked ``training`` (and ``torch``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service.store import ModelStore
from tests.tiny_models import publish_committed, publish_tiny, train_tiny

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAINING_FIXTURES = {"tiny_run", "source_store"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``training`` every test that trains or prunes ``tiny`` (it uses one of
    TRAINING_FIXTURES), and ``torch`` those and every test whose module imports torch."""
    for item in items:
        training = bool(TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())))
        if training:
            item.add_marker(pytest.mark.training)
        if training or getattr(getattr(item, "module", None), "torch", None) is not None:
            item.add_marker(pytest.mark.torch)


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
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """The committed models ``probe`` and ``unet-tiny``, v1 each, alias production."""
    return publish_committed(tmp_path_factory.mktemp("model_store"))


@pytest.fixture(scope="session")
def tiny_run(
    synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[int], Path]:
    """``tiny_run(epochs)``: the run folder of ``tiny`` trained on ``synthetic_root`` for that
    many epochs, trained once per session for each number. Shared: copy it before changing it."""
    pytest.importorskip("torch")
    runs: dict[int, Path] = {}

    def run(epochs: int) -> Path:
        if epochs not in runs:
            out_dir = tmp_path_factory.mktemp(f"tiny-{epochs}-epochs") / "run"
            runs[epochs] = train_tiny(synthetic_root, out_dir, epochs=epochs)
        return runs[epochs]

    return run


@pytest.fixture(scope="session")
def source_store(
    tiny_run: Callable[[int], Path], tmp_path_factory: pytest.TempPathFactory
) -> ModelStore:
    """A store holding ``tiny`` v1 (weights and ONNX) after one epoch, alias production: the
    source the compression and job tests prune. Tests that publish work on a copy of it."""
    pytest.importorskip("torch_pruning")
    store = ModelStore(tmp_path_factory.mktemp("store"))
    publish_tiny(tiny_run(1), store)
    return store
