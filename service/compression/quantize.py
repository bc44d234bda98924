"""int8: ONNX Runtime static quantization of a published version into a new version.

The float version's ONNX graph is prepared as ONNX Runtime's documentation asks (its
``quant_pre_process``: shape inference and graph optimisation), calibrated on images of the
training split only, and quantized to QDQ form: int8 weights per output channel, uint8
activations (the U8S8 pair ONNX Runtime's x86 kernels run with VNNI). Nodes whose precision
matters most may stay float: the stem (it reads the raw strip), the head (the class logits that
thresholds are tuned on) and the presence head (the gate's scores).

What publication checks is what int8 changes: the masks. The int8 graph and its float parent run
on the validation split with the parent's thresholds, minimum areas and gates, and the Dice
between their masks, per class (a pair both leave empty scores 1), must reach ``min_mask_dice``
for every class; a version that misses it is refused and nothing is published. Logits are not
compared bit for bit: int8 moves every one of them a little.

No torch: quantization works on the ONNX graph, so an API box can run it as well as a worker.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from service.architectures import CALIBRATION_METHOD_NAMES, FLOAT_PART_NAMES
from service.compression.latency import measure_side_by_side
from service.data.base import SegmentationDataset
from service.data.catalog import evaluation_split, open_dataset
from service.evaluation.metrics import SCORE_KEYS, DiceAccumulator
from service.evaluation.run import evaluate, predict_dataset
from service.host import host_description
from service.inference.postprocess import probabilities_to_masks
from service.inference.preprocess import prepare_batch
from service.inference.runtime import OnnxSegmenter
from service.store import ONNX_FILE, Lineage, Manifest, ManifestDraft, Metrics, ModelStore

CALIBRATION_METHODS: dict[str, CalibrationMethod] = dict(
    zip(
        CALIBRATION_METHOD_NAMES,
        (CalibrationMethod.MinMax, CalibrationMethod.Entropy, CalibrationMethod.Percentile),
        strict=True,
    )
)
FLOAT_PARTS = FLOAT_PART_NAMES
LOGITS, PRESENCE = "logits", "presence"
STRIP = (256, 1600)


class MaskCheckFailed(RuntimeError):
    """The int8 graph's masks differ too much from its float parent's: nothing is published."""


@dataclass(frozen=True)
class QuantizeSettings:
    """How a version is quantized; recorded in the int8 version's lineage."""

    calibration_images: int = 200
    method: str = "minmax"
    per_channel: bool = True
    keep_float: tuple[str, ...] = FLOAT_PARTS
    """Which of ``FLOAT_PARTS`` stay float."""
    min_mask_dice: float = 0.9
    """The least Dice, per class, between the int8 and the float masks on validation images."""
    dataset: str | None = None
    """The data set to calibrate and check on; None: the one the parent was trained on."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(
                f"unknown calibration method {self.method!r}; choose one of "
                f"{', '.join(CALIBRATION_METHODS)}"
            )
        unknown = sorted(set(self.keep_float) - set(FLOAT_PARTS))
        if unknown:
            raise ValueError(f"unknown parts {unknown}; choose from {', '.join(FLOAT_PARTS)}")
        if self.calibration_images < 1:
            raise ValueError("calibration_images must be at least 1")
        if not 0.0 <= self.min_mask_dice <= 1.0:
            raise ValueError("min_mask_dice must lie in [0, 1]")


@dataclass
class QuantizeReport:
    """What a quantization did and measured, beside the published manifest."""

    excluded_nodes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    mask_dice: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)


class _Calibration(CalibrationDataReader):
    """The prepared training images, one per call, as ONNX Runtime's calibrator asks."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def calibration_indices(size: int, count: int, seed: int) -> list[int]:
    """``count`` distinct indices of a split of ``size`` (all of them if it is smaller)."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(size, size=min(count, size), replace=False).tolist())


def float_nodes(graph: onnx.GraphProto, parts: Sequence[str]) -> list[str]:
    """The Conv nodes of ``parts``: the stem reads the graph's input; the head and the presence
    head are the last Conv before the ``logits`` and ``presence`` outputs."""
    producers = {output: node for node in graph.node for output in node.output}
    names: list[str] = []
    if "stem" in parts:
        image = graph.input[0].name
        names += [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] == image]
    for part, output in (("head", LOGITS), ("presence", PRESENCE)):
        if part in parts and output in producers:
            names += [_last_conv_before(producers, output)]
    return list(dict.fromkeys(names))  # a one-conv net's stem is its head


def _last_conv_before(producers: dict[str, onnx.NodeProto], output: str) -> str:
    """Walk back from ``output`` along first inputs to the nearest Conv."""
    node = producers[output]
    while node.op_type != "Conv":
        node = producers[node.input[0]]
    return node.name


def quantize_graph(
    source: Path,
    target: Path,
    calibration: Iterator[np.ndarray],
    settings: QuantizeSettings,
) -> list[str]:
    """Write the QDQ int8 graph of ``source`` to ``target``; the float nodes it kept."""
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        excluded = float_nodes(graph.graph, settings.keep_float)
        quantize_static(
            str(prepared),
            str(target),
            _Calibration(graph.graph.input[0].name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[settings.method],
            nodes_to_exclude=excluded,
        )
    return excluded


def mask_agreement(
    parent: OnnxSegmenter,
    child: OnnxSegmenter,
    dataset: SegmentationDataset,
    manifest: Manifest,
    progress: bool = False,
) -> dict[str, float]:
    """Dice between the child's and the parent's masks per class (both empty: 1), on
    ``dataset`` with the parent's post-processing."""
    accumulator = DiceAccumulator([c.name for c in dataset.classes])
    runs = (
        predict_dataset(engine, dataset, manifest.input, progress=progress, description=name)
        for name, engine in (("float", parent), ("int8", child))
    )
    for (_, expected, expected_gate), (_, actual, actual_gate) in zip(*runs, strict=True):
        accumulator.add(
            probabilities_to_masks(actual, manifest.postprocess, actual_gate),
            probabilities_to_masks(expected, manifest.postprocess, expected_gate),
        )
    return dict(accumulator.result()["dice_per_class"])  # type: ignore[arg-type]


def quantize_version(
    store: ModelStore,
    name: str,
    ref: int | str,
    settings: QuantizeSettings,
    *,
    alias: str | None = "candidate",
    job_id: str | None = None,
    latency_repeats: int = 20,
    progress: bool = False,
    checkpoint: Callable[[str], None] | None = None,
) -> tuple[Manifest, QuantizeReport]:
    """Quantize version ``ref`` of ``name``, check its masks, score it and publish it as the
    next version (alias ``alias``). Raises MaskCheckFailed, publishing nothing, when a class's
    masks agree less than ``settings.min_mask_dice`` with the float parent's.

    ``checkpoint(stage)`` is called between stages: a job checks for cancellation there."""
    mark = checkpoint or (lambda stage: None)
    parent = store.load(name, ref)
    manifest = parent.manifest
    if manifest.precision != "float32":
        raise ValueError(f"{name} v{manifest.version} is {manifest.precision} already")
    dataset = settings.dataset or manifest.lineage.settings.get("dataset")
    if not dataset:
        raise ValueError(f"{name} v{manifest.version} names no data set: pass one to calibrate on")
    report = QuantizeReport()
    train = open_dataset(dataset, "train")
    indices = calibration_indices(len(train), settings.calibration_images, settings.seed)
    report.calibration = {
        "dataset": dataset,
        "split": "train",
        "images": len(indices),
        "seed": settings.seed,
        "method": settings.method,
        "per_channel": settings.per_channel,
    }
    batches = (prepare_batch([train[i].image], manifest.input) for i in indices)
    with tempfile.TemporaryDirectory() as folder:
        quantized = Path(folder) / ONNX_FILE
        mark("calibrating")
        report.excluded_nodes = quantize_graph(parent.file(ONNX_FILE), quantized, batches, settings)
        float_engine = OnnxSegmenter(parent.file(ONNX_FILE))
        int8_engine = OnnxSegmenter(quantized)
        mark("checking")
        report.mask_dice = mask_agreement(
            float_engine, int8_engine, open_dataset(dataset, "val"), manifest, progress
        )
        short = {k: v for k, v in report.mask_dice.items() if v < settings.min_mask_dice}
        if short:
            raise MaskCheckFailed(
                f"the int8 masks agree with the float ones less than {settings.min_mask_dice} "
                f"on validation images for {short}: not published"
            )
        mark("scoring")
        split = evaluation_split(dataset)
        held_out = open_dataset(dataset, split)
        scores = evaluate(
            int8_engine, held_out, manifest.input, manifest.postprocess, progress=progress
        )
        report.latency_ms = side_by_side_latency(
            float_engine, int8_engine, manifest, latency_repeats
        )
        draft = ManifestDraft(
            classes=manifest.classes,
            input=manifest.input,
            postprocess=manifest.postprocess,
            architecture=manifest.architecture,
            precision="int8",
            metrics=Metrics(
                params=manifest.metrics.params,
                macs=manifest.metrics.macs,
                **{k: v for k, v in scores.items() if k in SCORE_KEYS},
                evaluated_on=split,
                mask_dice_vs_parent=report.mask_dice,
                latency={
                    "onnxruntime_cpu_side_by_side": report.latency_ms,
                    "host": host_description(),
                },
            ),
            lineage=Lineage(
                parent_version=manifest.version,
                job_id=job_id,
                method="quantize",
                settings={
                    **asdict(settings),
                    "keep_float": list(settings.keep_float),
                    "excluded_nodes": report.excluded_nodes,
                    "calibration": report.calibration,
                    "format": "QDQ",
                    "weights": "int8" + (" per channel" if settings.per_channel else ""),
                    "activations": "uint8",
                },
            ),
        )
        mark("publishing")
        published = store.publish(name, draft, {ONNX_FILE: quantized})
    if alias:
        store.set_alias(name, alias, published.version)
    return published, report


def side_by_side_latency(
    parent: OnnxSegmenter, child: OnnxSegmenter, manifest: Manifest, repeats: int
) -> dict[str, dict[str, float]]:
    """Median milliseconds of the float parent and the int8 child, timed in turns, at the
    version's own input size and at a full 256x1600 strip."""
    sizes = {
        "native": manifest.input,
        "256x1600": manifest.input.model_copy(update={"height": STRIP[0], "width": STRIP[1]}),
    }
    timed: dict[str, dict[str, float]] = {"float32": {}, "int8": {}}
    for size, spec in sizes.items():
        runs = measure_side_by_side({"float32": parent, "int8": child}, spec, repeats=repeats)
        for precision in timed:
            timed[precision][size] = runs[precision]["median_ms"]
    return timed
