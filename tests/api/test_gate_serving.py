"""The service applies each class's gate from the manifest: a class whose presence score is
under its gate gets no mask, one over it keeps its mask; the same graph without gates reports
both; a gate on a graph without a presence output is refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.inference.inspector import Inspector, ModelLoadError, ServingOptions
from service.store import ModelStore
from tests.tiny_models import GATED_PROBE, MODELS, publish_gated_probe

from .conftest import AppFactory
from .strips import encode, plain_strip, post_strip

BRIGHT_BLOCK = (slice(16, 32), slice(64, 96))
DARK_BLOCK = (slice(100, 140), slice(800, 880))


@pytest.fixture(scope="module")
def gated_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """gated-probe v1 with gates on classes 1 and 3 (alias production), v2 without (``open``)."""
    store = ModelStore(tmp_path_factory.mktemp("gated_store"))
    gated = publish_gated_probe(store, {1: 0.5, 3: 0.5}, tmp_path_factory.mktemp("gated"))
    ungated = publish_gated_probe(store, {}, tmp_path_factory.mktemp("ungated"))
    store.set_alias(GATED_PROBE, "production", gated)
    store.set_alias(GATED_PROBE, "open", ungated)
    return store


def _strip_with_bright_and_dark_blocks() -> bytes:
    strip = plain_strip()
    strip[BRIGHT_BLOCK] = 255
    strip[DARK_BLOCK] = 0
    return encode(strip, "PNG")


@pytest.mark.parametrize(("alias", "classes"), [("production", [1]), ("open", [1, 3])])
def test_the_served_gate_drops_the_class_under_it(
    running_app: AppFactory,
    database_url: str,
    gated_store: ModelStore,
    alias: str,
    classes: list[int],
) -> None:
    with running_app(
        database_url, model_store=gated_store.root, model_name=GATED_PROBE, model_alias=alias
    ) as client:
        response = post_strip(client, _strip_with_bright_and_dark_blocks(), "image/png")
    assert response.status_code == 200, response.text
    assert [d["class_id"] for d in response.json()["defects"]] == classes


def test_a_gate_without_a_presence_output_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = publish_gated_probe(store, {1: 0.5}, tmp_path, graph=MODELS / "probe.onnx")
    with pytest.raises(ModelLoadError, match=r"classes \[1\] have a gate but model.onnx"):
        Inspector(store.load(GATED_PROBE, version), ServingOptions())
