"""Compression jobs end to end on a tiny net: publish, cancel, resume, refuse bad settings."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from PIL import Image  # noqa: E402

from service.cli import main  # noqa: E402
from service.compression.config import CompressionConfig  # noqa: E402
from service.compression.pipeline import (  # noqa: E402
    CompressionCancelled,
    CompressionResult,
    run_compression,
)
from service.compression.state import ARCHITECTURE_FILE, STEPS_DIR, load_step_model  # noqa: E402
from service.inference.preprocess import padded_size, prepare_batch  # noqa: E402
from service.inference.runtime import OnnxSegmenter  # noqa: E402
from service.nets import Architecture, build_model, count_params_and_macs  # noqa: E402
from service.store import ModelStore  # noqa: E402
from service.training.publish import ONNX_FILE, load_version_model  # noqa: E402

from .conftest import SOURCE_MODEL  # noqa: E402

Events = list[dict[str, Any]]


def last_step_arch(work_dir: Path, step: int) -> Architecture:
    folder = work_dir / STEPS_DIR / f"{step:03d}"
    return Architecture.from_dict(json.loads((folder / ARCHITECTURE_FILE).read_text()))


def tiny_job(dataset: Path, **changes: Any) -> CompressionConfig:
    config = CompressionConfig(
        model=SOURCE_MODEL,
        method="fpgm",
        flops_reduction=0.5,
        steps=2,
        finetune_epochs_per_step=1,
        finetune_epochs=0,
        round_to=1,  # the tiny net's layers are 8 to 64 wide: let every one be pruned
        max_dice_drop=100.0,  # a 1-epoch net's Dice is noise: let both steps count
        dataset=str(dataset),
        device="cpu",
        batch_size=4,
        crop=(128, 256),
        job_id="job-1",
        latency_repeats=2,
    )
    return replace(config, **changes)


@pytest.fixture(scope="module")
def finished(
    source_store: ModelStore, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CompressionResult, ModelStore, Events, Path]:
    folder = tmp_path_factory.mktemp("finished")
    store = ModelStore(shutil.copytree(source_store.root, folder / "store"))
    events: Events = []
    work_dir = folder / "work"
    result = run_compression(
        tiny_job(synthetic_root, distill=True), store, work_dir=work_dir, progress=events.append
    )
    return result, store, events, work_dir


def test_a_job_publishes_a_smaller_candidate_with_lineage(finished) -> None:
    result, store, _, _ = finished
    manifest = result.manifest
    assert manifest.version == 2
    assert store.aliases(SOURCE_MODEL) == {"production": 1, "candidate": 2}
    assert manifest.lineage.parent_version == 1
    assert manifest.lineage.job_id == "job-1"
    assert manifest.lineage.method == "fpgm"
    assert manifest.lineage.settings["flops_reduction"] == 0.5
    metrics = manifest.metrics.model_dump()
    source = store.manifest(SOURCE_MODEL, 1).metrics
    assert metrics["macs"] <= 0.5 * source.macs
    assert metrics["params"] < source.params
    assert metrics["macs_reduction"] >= 0.5
    assert metrics["parity"]["mask_agreement"] > 0.999
    assert metrics["parity"]["max_abs_logit_diff"] < 1e-3
    latency = metrics["latency"]
    assert latency["speedup"] == pytest.approx(
        latency["source_onnxruntime_cpu"]["median_ms"] / latency["onnxruntime_cpu"]["median_ms"]
    )
    assert 0.0 <= metrics["dice"] <= 1.0 and 0.0 <= metrics["source"]["dice"] <= 1.0


def test_the_candidate_rebuilds_from_its_weights_and_serves_through_onnx(finished) -> None:
    _, store, _, _ = finished
    model, manifest = load_version_model(store, SOURCE_MODEL, "candidate")
    spec = manifest.input
    params, macs = count_params_and_macs(model, *padded_size(spec.height, spec.width))
    assert (params, macs) == (manifest.metrics.params, manifest.metrics.macs)
    strip = np.random.default_rng(0).integers(0, 256, (spec.height, spec.width), dtype=np.uint8)
    batch = prepare_batch([strip, strip], spec)
    session = OnnxSegmenter(store.load(SOURCE_MODEL, "candidate").file(ONNX_FILE))
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    assert session(batch).shape == (2, len(manifest.classes), *batch.shape[2:])
    assert np.abs(session(batch) - expected).max() < 1e-3


def test_progress_reports_each_step_and_the_report_plots_them(finished) -> None:
    result, _, events, _ = finished
    kinds = [event["event"] for event in events]
    assert kinds == [
        "baseline", "pruned", "epoch", "step", "pruned", "epoch", "step", "publishing", "published"
    ]  # fmt: skip
    steps = [event for event in events if event["event"] == "step"]
    assert [event["step"] for event in steps] == [1, 2]
    assert all(event["steps"] == 2 and event["val_dice"] is not None for event in steps)
    assert events[0]["macs"] > steps[0]["macs"] > steps[1]["macs"]
    assert result.report["kept_step"] == 2 and result.report["target_reached"]
    assert [record["step"] for record in result.report["steps"]] == [1, 2]
    with Image.open(result.report_png) as plot:
        assert plot.format == "PNG"


def test_a_finished_job_run_again_returns_its_version(finished, synthetic_root: Path) -> None:
    result, store, _, work_dir = finished
    again = run_compression(tiny_job(synthetic_root, distill=True), store, work_dir=work_dir)
    assert again.version == result.version
    assert store.versions(SOURCE_MODEL) == [1, 2]


def test_a_killed_then_cancelled_job_resumes_after_its_last_completed_step(
    store: ModelStore, synthetic_root: Path, tmp_path: Path
) -> None:
    config = tiny_job(synthetic_root, flops_reduction=None, pruning_ratio=0.4)
    work_dir = tmp_path / "work"

    def die_after_step_1(event: dict[str, Any]) -> None:
        if event["event"] == "step":
            raise RuntimeError("worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        run_compression(config, store, work_dir=work_dir, progress=die_after_step_1)
    step_1 = work_dir / "steps" / "001" / "metrics.json"
    saved = step_1.read_text()

    events: Events = []
    with pytest.raises(CompressionCancelled):
        run_compression(
            config,
            store,
            work_dir=work_dir,
            progress=events.append,
            should_cancel=lambda: any(event["event"] == "pruned" for event in events),
        )
    assert [(e["event"], e["step"]) for e in events] == [("baseline", 0), ("pruned", 2)]
    assert not (work_dir / "steps" / "002").exists()

    events.clear()
    result = run_compression(config, store, work_dir=work_dir, progress=events.append)
    assert [e["step"] for e in events if e["event"] == "pruned"] == [2]
    assert step_1.read_text() == saved
    assert result.report["kept_step"] == 2
    assert store.aliases(SOURCE_MODEL)["candidate"] == result.version == 2

    (work_dir / "result.json").unlink()  # as if the worker died right after publishing
    assert run_compression(config, store, work_dir=work_dir).version == result.version
    assert store.versions(SOURCE_MODEL) == [1, 2]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "taylor"}, "unknown pruning method"),
        ({"flops_reduction": 0.96}, r"flops_reduction must be in \(0, 0.95\]"),
        ({"flops_reduction": 0.0}, "flops_reduction must be in"),
        ({"pruning_ratio": 0.3}, "exactly one target"),
        ({"flops_reduction": None}, "exactly one target"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"device": "tpu"}, "unknown device"),
        ({"crop": (100, 256)}, "multiples of 32"),
    ],
)
def test_bad_settings_are_refused_when_the_config_is_built(
    synthetic_root: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_job(synthetic_root, **changes)


@pytest.mark.parametrize(
    ("dataset", "message"),
    [("nowhere:/data", "unknown dataset kind"), ("/no/such/folder", "no folder at")],
)
def test_unknown_datasets_are_refused_before_any_work(
    source_store: ModelStore, tmp_path: Path, dataset: str, message: str
) -> None:
    config = tiny_job(Path(dataset))
    with pytest.raises(ValueError, match=message):
        run_compression(config, source_store, work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_a_work_folder_refuses_another_jobs_settings(finished, synthetic_root: Path) -> None:
    _, store, _, work_dir = finished
    with pytest.raises(ValueError, match="another job"):
        run_compression(tiny_job(synthetic_root, seed=1), store, work_dir=work_dir)


def test_the_cli_prints_the_result_of_a_finished_job(
    finished, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, store, _, work_dir = finished
    # The same settings as the fixture's job: the CLI finds it finished and prints its result.
    code = main(
        [
            "compress", "--quiet", "--model", SOURCE_MODEL, "--store", str(store.root),
            "--work-dir", str(work_dir), "--method", "fpgm", "--flops-reduction", "0.5",
            "--steps", "2", "--finetune-epochs-per-step", "1", "--finetune-epochs", "0",
            "--round-to", "1", "--max-dice-drop", "100",
            "--dataset", str(synthetic_root), "--device", "cpu", "--distill", "--batch", "4",
            "--crop", "128x256", "--job-id", "job-1", "--latency-repeats", "2",
        ]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["version"] == result.version
    assert printed["metrics"]["macs"] == result.manifest.metrics.macs


def test_the_cli_refuses_a_target_out_of_range(
    source_store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "compress", "--model", SOURCE_MODEL, "--store", str(source_store.root),
            "--work-dir", str(tmp_path / "work"), "--flops-reduction", "0.99",
        ]
    )  # fmt: skip
    assert code == 2
    assert "flops_reduction must be in (0, 0.95]" in capsys.readouterr().err


def test_scratch_re_initialises_the_pruned_architecture_before_the_final_fine_tune(
    store: ModelStore, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.compression import steps as pruning_steps

    starts: list[dict[str, Any]] = []
    real_finetune = pruning_steps.finetune

    def recording_finetune(model, *args, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_finetune(model, *args, **kwargs)

    monkeypatch.setattr(pruning_steps, "finetune", recording_finetune)
    config = tiny_job(
        synthetic_root, method="scratch", finetune_epochs_per_step=0, finetune_epochs=1, seed=3
    )
    result = run_compression(config, store, work_dir=tmp_path / "work")
    final_start = starts[-1]
    last_step = load_step_model(tmp_path / "work", config.steps)
    torch.manual_seed(3)
    fresh = build_model(last_step_arch(tmp_path / "work", config.steps))
    for name, value in final_start.items():
        assert torch.equal(value, fresh.state_dict()[name]), name
    step_state = last_step.state_dict()
    assert any(
        not torch.equal(value, step_state[name])
        for name, value in final_start.items()
        if value.is_floating_point()
    )
    assert result.manifest.lineage.method == "scratch"
    assert result.report["kept_step"] == config.steps + 1
