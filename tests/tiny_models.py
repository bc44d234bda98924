"""Every model the tests serve, train or prune, in one place.

Committed under tests/data/models/ (made with torch by ``python -m tests.make_tiny_models``, which
the tests never run) and served without torch, so that the API tests run where it is missing:

- ``probe``: a 1x1 convolution whose class 1 fires exactly on bright pixels (> 200) and class 3
  on dark ones (< 20), so tests know precisely which masks must come back. ONNX only.
- ``gated-probe`` (made from ``probe`` at test time, with onnx): the probe plus a presence
  output, each class's maximum logit over the strip, class 3's lowered by 20, so a strip with
  dark pixels fires class 3's pixels but its presence score stays under any gate over 0.001.
- ``unet-tiny``: the real U-Net/ResNet-18 at its narrowest (width 1/32, every layer 8 channels
  or more), randomly initialised, to serve a real architecture; published with its weights, so
  that a compression job may name it as its source.

Trained at test time (torch; ``train_tiny`` and ``publish_tiny``):

- ``tiny``: a width-1/8 U-Net trained on the synthetic strips for a given number of epochs and
  published with its weights: what the training tests check and the compression and job tests
  prune.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.store import (
    ONNX_FILE,
    WEIGHTS_FILE,
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

if TYPE_CHECKING:
    from service.training.train import TrainConfig

MODELS = Path(__file__).resolve().parent / "data" / "models"
HEIGHT, WIDTH = 256, 1600
BRIGHT, DARK = 200, 20
CLASSES = [
    DefectClassSpec(id=k, name=n) for k, n in enumerate(("pits", "crack", "scratch", "scale"), 1)
]
MIN_AREA = 4
UNET_TINY_WIDTH = 1 / 32


@dataclass(frozen=True)
class CommittedModel:
    """A model whose files are committed: its manifest is written when a test publishes it."""

    name: str
    architecture: ArchitectureSpec
    params: int
    """Of the net the files were exported from (make_tiny_models checks it)."""
    with_weights: bool = False

    def files(self) -> dict[str, Path]:
        files = {ONNX_FILE: MODELS / f"{self.name}.onnx"}
        if self.with_weights:
            files[WEIGHTS_FILE] = MODELS / f"{self.name}.safetensors"
        return files


COMMITTED = (
    CommittedModel(
        "probe",
        ArchitectureSpec(family="probe", encoder="none", in_channels=1, num_classes=4),
        params=8,
    ),
    CommittedModel(
        "unet-tiny",
        ArchitectureSpec(
            family="unet",
            encoder="resnet18",
            in_channels=1,
            num_classes=4,
            width_multiplier=UNET_TINY_WIDTH,
        ),
        params=25116,
        with_weights=True,
    ),
)


def publish_committed(root: Path) -> ModelStore:
    """A store at ``root`` holding every committed model as v1, alias production."""
    store = ModelStore(root)
    spec = InputSpec(height=HEIGHT, width=WIDTH, channels=1)
    for model in COMMITTED:
        draft = ManifestDraft(
            classes=CLASSES,
            input=spec,
            postprocess=[
                ClassPostprocess(class_id=c.id, threshold=0.5, min_area=MIN_AREA) for c in CLASSES
            ],
            architecture=model.architecture,
            metrics=Metrics(params=model.params, macs=0, dice=0.5),
            lineage=Lineage(method="test", settings={"purpose": model.name}),
        )
        manifest = store.publish(model.name, draft, model.files())
        store.set_alias(model.name, "production", manifest.version)
    return store


GATED_PROBE = "gated-probe"
GATED_PROBE_PRESENCE_OFFSET = (0.0, 0.0, -20.0, 0.0)


def write_gated_probe(path: Path) -> Path:
    """``probe.onnx`` with a second output ``presence`` (see the module docstring)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(MODELS / "probe.onnx"))
    graph = model.graph
    logits = graph.output[0].name
    offset = np.array(GATED_PROBE_PRESENCE_OFFSET, dtype=np.float32)
    graph.initializer.append(numpy_helper.from_array(offset, "presence_offset"))
    graph.node.extend(
        [
            helper.make_node("ReduceMax", [logits], ["peak"], axes=[2, 3], keepdims=0),
            helper.make_node("Add", ["peak", "presence_offset"], ["presence"]),
        ]
    )
    graph.output.append(
        helper.make_tensor_value_info("presence", onnx.TensorProto.FLOAT, ["batch", 4])
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def publish_gated_probe(
    store: ModelStore,
    gates: dict[int, float | None],
    folder: Path,
    graph: Path | None = None,
) -> int:
    """Publish the gated probe with ``gates`` (class id -> gate) as the next version of
    ``gated-probe`` (with another ONNX ``graph`` if given); returns the version."""
    draft = ManifestDraft(
        classes=CLASSES,
        input=InputSpec(height=HEIGHT, width=WIDTH, channels=1),
        postprocess=[
            ClassPostprocess(class_id=c.id, threshold=0.5, min_area=MIN_AREA, gate=gates.get(c.id))
            for c in CLASSES
        ],
        architecture=ArchitectureSpec(
            family="probe", encoder="none", in_channels=1, num_classes=4, presence_head=True
        ),
        metrics=Metrics(params=8, macs=0),
        lineage=Lineage(method="test", settings={"purpose": GATED_PROBE}),
    )
    onnx_path = graph or write_gated_probe(folder / ONNX_FILE)
    return store.publish(GATED_PROBE, draft, {ONNX_FILE: onnx_path}).version


TINY = "tiny"


def tiny_train_config(dataset: Path, out_dir: Path, *, epochs: int, **changes: Any) -> TrainConfig:
    """How ``tiny`` is trained: a width-1/8 U-Net on 128x256 crops, on the CPU."""
    from service.training.train import TrainConfig

    settings: dict[str, Any] = {
        "width_multiplier": 0.125,
        "batch_size": 4,
        "crop": (128, 256),
        "lr": 3e-3,
        "device": "cpu",
        "progress": False,
        **changes,
    }
    return TrainConfig(dataset=str(dataset), out_dir=out_dir, epochs=epochs, **settings)


def train_tiny(dataset: Path, out_dir: Path, *, epochs: int) -> Path:
    """Train ``tiny`` on ``dataset`` into the run folder ``out_dir`` (torch)."""
    from service.training.train import train

    train(tiny_train_config(dataset, out_dir, epochs=epochs))
    return out_dir


def publish_tiny(run_dir: Path, store: ModelStore) -> Manifest:
    """Publish the run's best weights and their ONNX export as the next version of ``tiny``,
    alias production (torch).

    Published directly rather than with publish_run, whose tuning and latency runs the tests
    that prune it do not need.
    """
    from safetensors.torch import load_file

    from service.data.synthetic import SYNTHETIC_CLASSES
    from service.nets import Architecture, build_model, count_params_and_macs
    from service.training.export import export_onnx
    from service.training.train import BEST_WEIGHTS_FILE, RUN_FILE

    run = json.loads((run_dir / RUN_FILE).read_text())
    model = build_model(Architecture.from_dict(run["architecture"]))
    model.load_state_dict(load_file(str(run_dir / BEST_WEIGHTS_FILE)))
    spec = InputSpec.model_validate(run["input"])
    params, macs = count_params_and_macs(model, spec.height, spec.width)
    draft = ManifestDraft(
        classes=[DefectClassSpec(id=c.id, name=c.name) for c in SYNTHETIC_CLASSES],
        input=spec,
        postprocess=[
            ClassPostprocess(class_id=c.id, threshold=0.5, min_area=0) for c in SYNTHETIC_CLASSES
        ],
        architecture=ArchitectureSpec(**run["architecture"]),
        metrics=Metrics(params=params, macs=macs),
        lineage=Lineage(method="train", settings=run["config"]),
    )
    with tempfile.TemporaryDirectory() as folder:  # the run folder stays as training left it
        onnx_path = Path(folder) / ONNX_FILE
        export_onnx(model, spec, onnx_path)
        files = {WEIGHTS_FILE: run_dir / BEST_WEIGHTS_FILE, ONNX_FILE: onnx_path}
        manifest = store.publish(TINY, draft, files)
    store.set_alias(TINY, "production", manifest.version)
    return manifest
