"""The compression job (DESIGN.md): prune a published version in small steps with a chosen
criterion and allocation, recover briefly and evaluate after every step, fine-tune the result
once at length (or, without a final fine-tune, keep the last step within the allowed Dice
drop), then check it and publish it as a new version with the alias ``candidate``.

Every completed step is saved in the work folder (see ``state``). Run again with the same work
folder, a job resumes after its last completed step; a job that already published (recorded
in the work folder, or found in the store by its job id and settings) returns that version
instead of publishing twice.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.compression import SCRATCH
from service.compression.allocation import (
    Allocator,
    conv_widths,
    prune_to_level,
    score_groups,
    search_level,
    search_macs,
)
from service.compression.config import CompressionConfig
from service.compression.finetune import distillation_objective, finetune
from service.compression.importance import make_importance
from service.compression.publish import CANDIDATE_ALIAS, publish_candidate
from service.compression.report import REPORT_JSON, REPORT_PNG, write_report
from service.compression.state import (
    JOB_FILE,
    RESULT_FILE,
    completed_steps,
    load_step_model,
    read_json,
    save_step,
    write_json,
)
from service.data.base import SegmentationDataset
from service.data.catalog import open_dataset, parse_dataset_spec
from service.evaluation.run import Predictor, evaluate
from service.inference.preprocess import padded_size
from service.nets import (
    Architecture,
    SegmentationModel,
    build_model,
    count_params_and_macs,
    record_layer_shapes,
)
from service.store import ClassPostprocess, InputSpec, Manifest, ModelStore
from service.training.crops import TrainingCrops
from service.training.losses import BceDiceLoss
from service.training.predict import resolve_device, torch_predictor
from service.training.publish import WEIGHTS_FILE, load_version_model
from service.training.train import Objective, task_objective

Progress = Callable[[dict[str, Any]], None]
PRUNE, FINETUNE = "prune", "finetune"
"""A step record's kind: a pruning step (with its short recovery) or the final fine-tune."""
SCRATCH_CRITERION = "fpgm"
"""The criterion whose architecture ``scratch`` re-initialises."""
FINETUNE_CHECKPOINT = "finetune.pt"


class CompressionCancelled(Exception):
    """``should_cancel`` said stop; completed steps stay in the work folder for a resume."""


class CompressionError(RuntimeError):
    """The job ran but has nothing to publish: already its first step lost too much Dice."""


@dataclass(frozen=True)
class CompressionResult:
    manifest: Manifest
    report: dict[str, Any]
    report_json: Path
    report_png: Path

    @property
    def version(self) -> int:
        return self.manifest.version

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.manifest.name,
            "version": self.manifest.version,
            "kept_step": self.report["kept_step"],
            "metrics": self.manifest.metrics.model_dump(),
            "lineage": self.manifest.lineage.model_dump(),
            "report_json": str(self.report_json),
            "report_png": str(self.report_png),
        }


class _Watch:
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
class _Job:
    """Everything a run works with, loaded once."""

    config: CompressionConfig
    work_dir: Path
    watch: _Watch
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
            self.train_set, config.crop, self.spec.channels, self.spec.normalisation, config.seed
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


def run_compression(
    config: CompressionConfig,
    store: ModelStore,
    *,
    work_dir: Path,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> CompressionResult:
    """Run (or resume) the job; raises CompressionCancelled, CompressionError or ValueError.

    ``progress`` receives dicts with ``event`` (baseline, pruned, epoch, step, published),
    ``step``, ``steps``, ``epoch``, ``loss``, ``val_dice``, ``macs`` and ``params``. The final
    fine-tune counts as the step after the last pruning step, and in ``steps``.
    """
    work_dir = Path(work_dir)
    job_record = read_json(work_dir / JOB_FILE)
    requested = _requested(config)
    if job_record is not None and job_record["requested"] != requested:
        raise ValueError(f"{work_dir} holds the work of another job; give a fresh work folder")
    finished = read_json(work_dir / RESULT_FILE)
    if finished is not None:
        return _finished_result(store, config.model, work_dir, finished["version"])
    stages = config.steps + (config.finetune_epochs > 0)
    job = _open_job(config, store, work_dir, job_record, _Watch(stages, progress, should_cancel))
    if job_record is None:
        write_json(
            work_dir / JOB_FILE,
            {
                "requested": requested,
                "settings": job.config.settings(),
                "source_version": job.manifest.version,
                "baseline": job.baseline,
            },
        )
    job.watch.emit("baseline", step=0, **job.baseline)
    records = _run_steps(job)
    if job.config.finetune_epochs > 0:
        records.append(_final_finetune(job, records))
        kept = records[-1]["step"] if records[-1]["within_drop"] else None
    else:
        kept = next((r["step"] for r in reversed(records) if r["within_drop"]), None)
    if kept is None:
        write_report(work_dir, job.config, job.manifest, job.baseline, records, None, None)
        failed = records[-1] if job.config.finetune_epochs > 0 else records[0]
        raise CompressionError(
            f"{'the fine-tuned net' if job.config.finetune_epochs > 0 else 'step 1'} lost "
            f"{failed['dice_drop_points']:.2f} Dice points, more than the "
            f"{job.config.max_dice_drop} allowed: nothing to publish"
        )
    job.watch.check()
    published = _published_by(store, job.config) or publish_candidate(
        load_step_model(work_dir, kept).to(job.device),
        source=job.source,
        source_manifest=job.manifest,
        store=store,
        config=job.config,
        work_dir=work_dir,
        device=job.device,
        guard=job.watch.watched,
        baseline=job.baseline,
    )
    store.set_alias(config.model, CANDIDATE_ALIAS, published.version)
    write_report(work_dir, job.config, job.manifest, job.baseline, records, kept, published)
    write_json(work_dir / RESULT_FILE, {"version": published.version})
    job.watch.emit("published", step=kept, version=published.version, **_sizes(published))
    return _finished_result(store, config.model, work_dir, published.version)


def _published_by(store: ModelStore, config: CompressionConfig) -> Manifest | None:
    """The version this very job (same job id and settings) already published, if any: a
    worker that died between publishing and recording it must not publish twice."""
    if config.job_id is None:
        return None
    for version in reversed(store.versions(config.model)):
        manifest = store.manifest(config.model, version)
        lineage = manifest.lineage
        if lineage.job_id == config.job_id and lineage.settings == config.settings():
            return manifest
    return None


def _requested(config: CompressionConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the first; the device may change."""
    return {k: v for k, v in config.settings().items() if k != "device"}


def _open_job(
    config: CompressionConfig,
    store: ModelStore,
    work_dir: Path,
    job_record: dict[str, Any] | None,
    watch: _Watch,
) -> _Job:
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
    train_set, val_set = _open_splits(config.dataset, len(manifest.classes))
    device = resolve_device(config.device)
    source, manifest = load_version_model(store, config.model, version)
    source.to(device)
    job = _Job(config, work_dir, watch, device, source, manifest, train_set, val_set, {})
    job.baseline = (
        job_record["baseline"] if job_record else job.measure(source, manifest.postprocess)
    )
    return job


def _open_splits(dataset: str, num_classes: int) -> tuple[SegmentationDataset, SegmentationDataset]:
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


def _run_steps(job: _Job) -> list[dict[str, Any]]:
    """Prune, recover and evaluate from the step after the last completed one; the records of
    every pruning step. Without a final fine-tune, a step beyond the allowed drop is the last."""
    config = job.config
    records = [r for r in completed_steps(job.work_dir) if r.get("kind", PRUNE) == PRUNE]
    model = (
        load_step_model(job.work_dir, records[-1]["step"]) if records else copy.deepcopy(job.source)
    )
    model.to(job.device)
    importance = make_importance(SCRATCH_CRITERION if config.method == SCRATCH else config.method)
    allocator = Allocator(config.allocation, config.round_to or 1, config.max_layer_ratio)
    source_widths = conv_widths(job.source)
    objective = _objective(job)
    source_search_macs = search_macs(job.source)
    for step in range(len(records) + 1, config.steps + 1):
        if records and not records[-1]["within_drop"] and config.finetune_epochs == 0:
            break
        job.watch.check()
        started = time.perf_counter()
        groups = score_groups(model, importance, source_widths, seed=config.seed * 1000 + step)
        if config.flops_reduction is not None:
            target = source_search_macs * step_macs_fraction(
                config.flops_reduction, step, config.steps, config.schedule
            )
            model, level = search_level(model, groups, allocator, target)
        else:
            level = _step_ratio(config.pruning_ratio, step, config.steps)
            model = prune_to_level(model, groups, allocator, level)
        pruned = job.measure(model, job.manifest.postprocess)
        job.watch.emit("pruned", step=step, **pruned)

        def after_epoch(epoch: int, loss: float, step: int = step) -> None:
            job.watch.emit("epoch", step=step, epoch=epoch, loss=loss)

        losses = finetune(
            model,
            job.crops(),
            objective,
            epochs=config.finetune_epochs_per_step,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed,
            first_epoch=step * 1000,
            device=job.device,
            before_batch=job.watch.check,
            after_epoch=after_epoch,
        )
        record = {
            "step": step,
            "kind": PRUNE,
            "ratio": level,
            **_scored(job, job.measure(model, job.manifest.postprocess)),
            "val_dice_after_pruning": pruned["val_dice"],
            "losses": losses,
            "loss": losses[-1] if losses else None,
            "seconds": time.perf_counter() - started,
        }
        save_step(job.work_dir, model, job.source_arch, record)
        records.append(record)
        job.watch.emit("step", step=step, epoch=len(losses), loss=record["loss"], **_sizes(record))
    return records


def _final_finetune(job: _Job, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The one long fine-tune of the last step's net (re-initialised first for ``scratch``);
    resumes from its per-epoch checkpoint, and is saved as the step after the last."""
    config = job.config
    step = records[-1]["step"] + 1
    done = next((r for r in completed_steps(job.work_dir) if r["step"] == step), None)
    if done is not None:
        return done
    started = time.perf_counter()
    model = load_step_model(job.work_dir, records[-1]["step"])
    if config.method == SCRATCH:
        torch.manual_seed(config.seed)
        model = build_model(replace(job.source_arch, layer_shapes=record_layer_shapes(model)))
    model.to(job.device)

    def after_epoch(epoch: int, loss: float) -> None:
        job.watch.emit("epoch", step=step, epoch=epoch, loss=loss)

    losses = finetune(
        model,
        job.crops(),
        _objective(job),
        epochs=config.finetune_epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        first_epoch=step * 1000,
        device=job.device,
        before_batch=job.watch.check,
        after_epoch=after_epoch,
        lr_schedule=config.lr_schedule,
        checkpoint=job.work_dir / FINETUNE_CHECKPOINT,
    )
    record = {
        "step": step,
        "kind": FINETUNE,
        "ratio": records[-1]["ratio"],
        **_scored(job, job.measure(model, job.manifest.postprocess)),
        "val_dice_after_pruning": records[-1]["val_dice"],
        "losses": losses,
        "loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - started,
    }
    save_step(job.work_dir, model, job.source_arch, record)
    job.watch.emit("step", step=step, epoch=len(losses), loss=record["loss"], **_sizes(record))
    return record


def _objective(job: _Job) -> Objective:
    if job.config.distill:
        return distillation_objective(job.source, job.config.distill_weight)
    return task_objective(BceDiceLoss())


def _scored(job: _Job, measured: dict[str, Any]) -> dict[str, Any]:
    """``measured`` with its MACs fraction and Dice drop against the source."""
    drop = (job.baseline["val_dice"] - measured["val_dice"]) * 100
    return {
        **measured,
        "macs_fraction": measured["macs"] / job.baseline["macs"],
        "dice_drop_points": drop,
        "within_drop": drop <= job.config.max_dice_drop,
    }


def step_macs_fraction(reduction: float, step: int, steps: int, schedule: str) -> float:
    """The share of the source's MACs step ``step`` of ``steps`` aims at: ``linear`` removes
    equal parts, ``agp`` follows Zhu & Gupta's cubic (1 - (1 - k/n)^3: large steps first)."""
    progress = step / steps
    if schedule == "agp":
        progress = 1 - (1 - progress) ** 3
    elif schedule != "linear":
        raise ValueError(f"unknown schedule {schedule!r}")
    return 1 - reduction * progress


def _step_ratio(total_ratio: float, step: int, steps: int) -> float:
    """The share of the current channels to remove so that ``step`` reaches its part of the
    total: after step k, (1 - total_ratio * k / steps) of the source's channels remain."""
    before = 1 - total_ratio * (step - 1) / steps
    after = 1 - total_ratio * step / steps
    return 1 - after / before


def _sizes(sized: Manifest | dict[str, Any]) -> dict[str, Any]:
    """MACs and params of a published version or of a step record."""
    if isinstance(sized, Manifest):
        return {"macs": sized.metrics.macs, "params": sized.metrics.params}
    return {key: sized[key] for key in ("macs", "params", "val_dice")}


def _finished_result(
    store: ModelStore, model: str, work_dir: Path, version: int
) -> CompressionResult:
    return CompressionResult(
        manifest=store.manifest(model, version),
        report=read_json(work_dir / REPORT_JSON),
        report_json=work_dir / REPORT_JSON,
        report_png=work_dir / REPORT_PNG,
    )
