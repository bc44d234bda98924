"""A compression job's work folder: what it has finished, so a restarted worker resumes there.

job.json                  the requested settings, the resolved source version, the baseline
steps/NNN/                one folder per completed pruning step, renamed into place whole:
    weights.safetensors   the step's fine-tuned weights (no pickles)
    architecture.json     the Architecture, pruned layer shapes included, that rebuilds it
    metrics.json          the step's record (MACs, params, validation Dice, losses, ...)
result.json               the published version, once there is one
report.json, report.png   the job's report
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from service.nets import Architecture, SegmentationModel, build_model, record_layer_shapes
from service.store import WEIGHTS_FILE, write_json
from service.training.train import cpu_state

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
STEPS_DIR = "steps"
ARCHITECTURE_FILE = "architecture.json"
METRICS_FILE = "metrics.json"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def save_step(
    work_dir: Path,
    model: SegmentationModel,
    source_arch: Architecture,
    record: dict[str, Any],
) -> None:
    """Write step ``record["step"]`` to a staging folder and rename it into place."""
    steps_dir = work_dir / STEPS_DIR
    steps_dir.mkdir(parents=True, exist_ok=True)
    target = steps_dir / f"{record['step']:03d}"
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=steps_dir))
    try:
        save_file(cpu_state(model), str(staging / WEIGHTS_FILE))
        arch = replace(source_arch, layer_shapes=record_layer_shapes(model))
        write_json(staging / ARCHITECTURE_FILE, arch.to_dict())
        write_json(staging / METRICS_FILE, record)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def completed_steps(work_dir: Path) -> list[dict[str, Any]]:
    """The records of every completed step, in order."""
    steps_dir = work_dir / STEPS_DIR
    if not steps_dir.is_dir():
        return []
    folders = sorted(p for p in steps_dir.iterdir() if p.is_dir() and p.name.isdigit())
    return [json.loads((folder / METRICS_FILE).read_text()) for folder in folders]


def load_step_model(work_dir: Path, step: int) -> SegmentationModel:
    folder = work_dir / STEPS_DIR / f"{step:03d}"
    arch = Architecture.from_dict(json.loads((folder / ARCHITECTURE_FILE).read_text()))
    model = build_model(arch)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    return model.eval()
