"""The compression benchmark on NEU-Seg, from the baseline version ``bench-neu`` publishes.

The FPGM job runs toward the MACs target with the allowed Dice drop; then random, L1 and
Torch-Pruning's FPGMImportance run to the MACs reduction FPGM actually kept, over as many steps
and with the same fine-tuning, without a Dice limit, so all four are compared at the same MACs.
Every job times its result against the source side by side (ONNX Runtime, CPU). The alias
``candidate`` ends on the FPGM version.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.compression import METHOD_NAMES
from service.compression.config import MAX_FLOPS_REDUCTION, CompressionConfig
from service.compression.pipeline import CompressionResult, run_compression
from service.compression.publish import CANDIDATE_ALIAS
from service.store import ModelStore

GOALS = {"macs_reduction": 0.8, "params_reduction": 0.9, "dice_drop_points": 1.0, "speedup": 4.0}
NO_DICE_LIMIT = 100.0


def bench_compress(
    out: Path,
    store_root: Path,
    config: CompressionConfig,
    baselines: Sequence[str] = tuple(m for m in METHOD_NAMES if m != "fpgm"),
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``config`` (an FPGM job), then ``baselines`` at the MACs it kept; one table.

    Work folders live under ``out/<method>``: a rerun resumes each job where it stopped.
    """
    store = ModelStore(store_root)
    if not store.versions(config.model):
        raise FileNotFoundError(
            f"no model {config.model!r} in {store_root}: run `python -m service bench-neu` first"
        )
    fpgm = _run(config, store, out, progress)
    kept_reduction = fpgm.manifest.metrics.model_dump()["macs_reduction"]
    results = [fpgm]
    for method in baselines:
        baseline = replace(
            config,
            method=method,
            flops_reduction=min(round(kept_reduction, 4), MAX_FLOPS_REDUCTION),
            pruning_ratio=None,
            steps=fpgm.report["kept_step"],
            max_dice_drop=NO_DICE_LIMIT,
            job_id=f"bench-{method}",
        )
        results.append(_run(baseline, store, out, progress))
    store.set_alias(config.model, CANDIDATE_ALIAS, fpgm.version)
    rows = [_row(result) for result in results]
    summary = {
        "source": f"{config.model} v{fpgm.manifest.lineage.parent_version}",
        "settings": config.settings(),
        "rows": rows,
        "goals": GOALS,
        "fpgm_meets": _meets(rows[0]),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(_markdown(rows))
    return summary


def _run(
    config: CompressionConfig, store: ModelStore, out: Path, progress: bool
) -> CompressionResult:
    def report(event: dict[str, Any]) -> None:
        print(json.dumps({"method": config.method, **event}), file=sys.stderr, flush=True)

    return run_compression(
        config, store, work_dir=out / config.method, progress=report if progress else None
    )


def _row(result: CompressionResult) -> dict[str, Any]:
    metrics = result.manifest.metrics.model_dump()
    latency = metrics["latency"]
    first_step = result.report["steps"][0]
    return {
        "method": result.manifest.lineage.method,
        "version": result.version,
        "kept_step": result.report["kept_step"],
        "test_dice": metrics["dice"],
        "source_test_dice": metrics["source"]["dice"],
        "dice_drop_points": metrics["dice_drop_points"],
        "test_dice_nonempty": metrics["dice_nonempty"],
        "val_dice_after_first_pruning": first_step["val_dice_after_pruning"],
        "params": metrics["params"],
        "macs": metrics["macs"],
        "params_reduction": metrics["params_reduction"],
        "macs_reduction": metrics["macs_reduction"],
        "latency_ms": latency["onnxruntime_cpu"]["median_ms"],
        "source_latency_ms": latency["source_onnxruntime_cpu"]["median_ms"],
        "speedup": latency["speedup"],
        "machine": latency["machine"],
    }


def _meets(row: dict[str, Any]) -> dict[str, bool]:
    return {
        "macs_reduction": row["macs_reduction"] >= GOALS["macs_reduction"],
        "params_reduction": row["params_reduction"] >= GOALS["params_reduction"],
        "dice_drop_points": row["dice_drop_points"] <= GOALS["dice_drop_points"],
        "speedup": row["speedup"] >= GOALS["speedup"],
    }


def _markdown(rows: list[dict[str, Any]]) -> str:
    header = (
        "| method | test Dice | drop (points) | val Dice after 1st pruning | params | MACs (G) "
        "| params -% | MACs -% | ORT CPU ms | source ms | speedup |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['method']} | {r['test_dice']:.4f} | {r['dice_drop_points']:.2f} "
        f"| {r['val_dice_after_first_pruning']:.4f} | {r['params']:,} "
        f"| {r['macs'] / 1e9:.3f} | {r['params_reduction']:.1%} | {r['macs_reduction']:.1%} "
        f"| {r['latency_ms']:.2f} | {r['source_latency_ms']:.2f} | {r['speedup']:.2f}x |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"
