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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.compression.config import CompressionConfig
from service.compression.job import (
    CompressionCancelled,
    JobWatch,
    Progress,
    open_job,
)
from service.compression.publish import CANDIDATE_ALIAS, publish_candidate
from service.compression.report import REPORT_JSON, REPORT_PNG, write_report
from service.compression.state import (
    JOB_FILE,
    RESULT_FILE,
    load_step_model,
    read_json,
    write_json,
)
from service.compression.steps import final_finetune, run_pruning_steps
from service.store import Manifest, ModelStore

__all__ = ["CompressionCancelled", "CompressionError", "CompressionResult", "run_compression"]


class CompressionError(RuntimeError):
    """The job ran but has nothing to publish: it lost more validation Dice than allowed."""


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
    stages = config.steps + (config.finetune_epochs > 0)
    finished = read_json(work_dir / RESULT_FILE)
    if finished is not None:
        if config.quantize is not None and "float_version" not in finished:
            watch = JobWatch(stages, progress, should_cancel)
            return _quantize_stage(store, config, watch, work_dir, finished["version"])
        return _finished_result(store, config.model, work_dir, finished["version"])
    job = open_job(config, store, work_dir, job_record, JobWatch(stages, progress, should_cancel))
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
    records = run_pruning_steps(job)
    if job.config.finetune_epochs > 0:
        records.append(final_finetune(job, records))
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
    job.watch.emit("publishing", step=kept)
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
    if config.quantize is not None:
        return _quantize_stage(store, job.config, job.watch, work_dir, published.version)
    return _finished_result(store, config.model, work_dir, published.version)


def _quantize_stage(
    store: ModelStore,
    config: CompressionConfig,
    watch: JobWatch,
    work_dir: Path,
    float_version: int,
) -> CompressionResult:
    """The optional last stage: the published float version quantized to int8 as the next
    version, which takes the alias ``candidate`` (once, however often the job resumes)."""
    from service.compression.quantize import QuantizeSettings, quantize_version

    watch.emit("quantizing", version=float_version)
    requested = dict(config.quantize or {})
    if "keep_float" in requested:
        requested["keep_float"] = tuple(requested["keep_float"])
    settings = QuantizeSettings(**requested)
    quantized = (
        _quantized_by(store, config)
        or quantize_version(
            store,
            config.model,
            float_version,
            settings,
            alias=None,
            job_id=config.job_id,
            latency_repeats=config.latency_repeats,
            checkpoint=lambda stage: watch.check(),
        )[0]
    )
    store.set_alias(config.model, CANDIDATE_ALIAS, quantized.version)
    write_json(
        work_dir / RESULT_FILE, {"version": quantized.version, "float_version": float_version}
    )
    watch.emit("quantized", version=quantized.version, **_sizes(quantized))
    return _finished_result(store, config.model, work_dir, quantized.version)


def _quantized_by(store: ModelStore, config: CompressionConfig) -> Manifest | None:
    """The int8 version this job already published, if any."""
    if config.job_id is None:
        return None
    for version in reversed(store.versions(config.model)):
        lineage = store.manifest(config.model, version).lineage
        if lineage.job_id == config.job_id and lineage.method == "quantize":
            return store.manifest(config.model, version)
    return None


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


def _sizes(manifest: Manifest) -> dict[str, Any]:
    return {"macs": manifest.metrics.macs, "params": manifest.metrics.params}


def _finished_result(
    store: ModelStore, model: str, work_dir: Path, version: int
) -> CompressionResult:
    return CompressionResult(
        manifest=store.manifest(model, version),
        report=read_json(work_dir / REPORT_JSON),
        report_json=work_dir / REPORT_JSON,
        report_png=work_dir / REPORT_PNG,
    )
