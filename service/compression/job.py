"""One compression job's working state: its settings, source, data and progress, loaded once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.compression.config import CompressionConfig
from service.data.base import SegmentationDataset
from service.data.catalog import open_dataset, parse_dataset_spec
from service.evaluation.run import Predictor, evaluate
from service.inference.preprocess import padded_size
from service.nets import Architecture, SegmentationModel, count_params_and_macs
from service.store import WEIGHTS_FILE, ClassPostprocess, InputSpec, Manifest, ModelStore
from service.training.crops import TrainingCrops
from service.training.predict import resolve_device, torch_predictor
from service.training.publish import load_version_model

Progress = Callable[[dict[str, Any]], None]


class CompressionCancelled(Exception):
    """``should_cancel`` said stop; completed steps stay in the work folder for a resume."""


class JobWatch:
    """Reports progress and honours cancellation: ``check`` runs before every batch."""

    def __init__(
        self, steps: int, progress: Progress | None, should_cancel: Callable[[], bool] | None
    ):
        self.steps = steps
        self.progress = progress
        self.should_cancel = should_cancel

    def check(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise CompressionCancelled("compression job cancelled")

    def emit(self, event: str, **fields: Any) -> None:
        if self.progress is not None:
            blank = dict.fromkeys(("step", "epoch", "loss", "val_dice", "macs", "params"))
            self.progress({"event": event, "steps": self.steps, **blank, **fields})

    def watched(self, predictor: Predictor) -> Predictor:
        """``predictor``, checking for cancellation before every batch."""

        def predict(batch: np.ndarray) -> np.ndarray:
            self.check()
            return predictor(batch)

        return predict


@dataclass
class CompressionJob:
    """Everything a run works with, loaded once."""

    config: CompressionConfig
    work_dir: Path
    watch: JobWatch
    device: torch.device
    source: SegmentationModel
    manifest: Manifest
    train_set: SegmentationDataset
    val_set: SegmentationDataset
    baseline: dict[str, Any]
    """The source's validation scores, params and MACs (``measure`` of the source)."""

    @property
    def spec(self) -> InputSpec:
        return self.manifest.input

    @property
    def source_arch(self) -> Architecture:
        return Architecture.from_dict(self.manifest.architecture.model_dump())

    def crops(self) -> TrainingCrops:
        config = self.config
        return TrainingCrops(
            self.train_set,
            config.crop,
            self.spec.channels,
            self.spec.normalisation,
            config.seed,
            defect_share=config.defect_share,
        )

    def measure(self, model: SegmentationModel, rules: list[ClassPostprocess]) -> dict[str, Any]:
        """Validation scores with ``rules``, and params/MACs at the served (padded) size."""
        scores = evaluate(
            self.watch.watched(torch_predictor(model, self.device)),
            self.val_set,
            self.spec,
            rules,
            progress=False,
        )
        params, macs = count_params_and_macs(model, *padded_size(self.spec.height, self.spec.width))
        return {
            "val_dice": scores["dice"],
            "val_dice_nonempty": scores["dice_nonempty"],
            "params": params,
            "macs": macs,
        }


def open_job(
    config: CompressionConfig,
    store: ModelStore,
    work_dir: Path,
    job_record: dict[str, Any] | None,
    watch: JobWatch,
) -> CompressionJob:
    """Resolve the source (the version recorded by a first run), open the data, the baseline."""
    version = (
        job_record["source_version"] if job_record else store.resolve(config.model, config.ref)
    )
    manifest = store.manifest(config.model, version)
    if WEIGHTS_FILE not in manifest.files:
        raise ValueError(
            f"{config.model} v{version} has no {WEIGHTS_FILE}: only a version published with "
            "its weights can be pruned"
        )
    config = config.resolved(manifest)
    train_set, val_set = open_splits(config.dataset, len(manifest.classes))
    device = resolve_device(config.device)
    source, manifest = load_version_model(store, config.model, version)
    source.to(device)
    job = CompressionJob(config, work_dir, watch, device, source, manifest, train_set, val_set, {})
    job.baseline = (
        job_record["baseline"] if job_record else job.measure(source, manifest.postprocess)
    )
    return job


def open_splits(dataset: str, num_classes: int) -> tuple[SegmentationDataset, SegmentationDataset]:
    _, root = parse_dataset_spec(dataset)
    if not root.is_dir():
        raise ValueError(f"dataset {dataset!r}: there is no folder at {root}")
    try:
        splits = open_dataset(dataset, "train"), open_dataset(dataset, "val")
    except FileNotFoundError as error:
        raise ValueError(f"dataset {dataset!r} cannot be read: {error}") from error
    if any(len(split.classes) != num_classes for split in splits):
        raise ValueError(f"dataset {dataset!r} does not have the source's {num_classes} classes")
    if not all(len(split) for split in splits):
        raise ValueError(f"dataset {dataset!r} has an empty train or val split")
    return splits
