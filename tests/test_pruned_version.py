"""A pruned net published to the store is rebuilt exactly from its manifest and safetensors."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
tp = pytest.importorskip("torch_pruning")

from safetensors.torch import save_file  # noqa: E402

from service.nets import Architecture, build_model, record_layer_shapes  # noqa: E402
from service.store import (  # noqa: E402
    ArchitectureSpec,
    ClassPostprocess,
    DefectClassSpec,
    InputSpec,
    ManifestDraft,
    Metrics,
    ModelStore,
)
from service.training.publish import WEIGHTS_FILE, load_version_model  # noqa: E402


def test_pruned_unet_round_trips_through_the_store(tmp_path: Path) -> None:
    torch.manual_seed(0)
    arch = Architecture(
        family="unet", encoder="resnet18", in_channels=1, num_classes=2, width_multiplier=0.25
    )
    model = build_model(arch).eval()
    example = torch.randn(1, 1, 64, 128)
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[model.classifier],
    )
    pruner.step()
    pruned_shapes = record_layer_shapes(model)
    assert pruned_shapes != record_layer_shapes(build_model(arch))

    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    draft = ManifestDraft(
        classes=[DefectClassSpec(id=1, name="a"), DefectClassSpec(id=2, name="b")],
        input=InputSpec(height=64, width=128, channels=1),
        postprocess=[ClassPostprocess(class_id=k, threshold=0.5, min_area=0) for k in (1, 2)],
        architecture=ArchitectureSpec(**{**arch.to_dict(), "layer_shapes": pruned_shapes}),
        metrics=Metrics(params=1, macs=1),
    )
    store = ModelStore(tmp_path / "store")
    manifest = store.publish("pruned", draft, {WEIGHTS_FILE: weights})

    rebuilt, loaded_manifest = load_version_model(store, "pruned", manifest.version)
    assert loaded_manifest.architecture.layer_shapes == pruned_shapes
    with torch.no_grad():
        assert torch.equal(rebuilt(example), model(example))
