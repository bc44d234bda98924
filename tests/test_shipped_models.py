"""The shipped store: production is the pruned, gated child of the shipped parent, and every
shipped version verifies and loads as the API would load it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.inference.inspector import Inspector, ServingOptions
from service.store import ModelStore

SHIPPED = ModelStore(Path(__file__).resolve().parents[1] / "model_store")
MODEL = "strip-defects"


@pytest.mark.parametrize("version", SHIPPED.versions(MODEL))
def test_every_shipped_version_verifies_and_loads(version: int) -> None:
    inspector = Inspector(SHIPPED.load(MODEL, version), ServingOptions(max_batch=1))
    inspector.warm_up()
    assert inspector.warmed


def test_production_is_the_gated_pruned_child_of_the_shipped_parent() -> None:
    child = SHIPPED.manifest(MODEL, SHIPPED.resolve(MODEL, "production"))
    assert child.lineage.method == "fpgm" and child.lineage.parent_version is not None
    parent = SHIPPED.manifest(MODEL, child.lineage.parent_version)
    assert child.architecture.presence_head and parent.architecture.presence_head
    assert any(rule.gate is not None for rule in child.postprocess)
    assert child.metrics.macs <= 0.2 * parent.metrics.macs
    assert child.metrics.params <= 0.1 * parent.metrics.params
