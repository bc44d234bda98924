"""The compression benchmark end to end on a tiny NEU-format set: every stage writes the
results file's schema, and a second run resumes from the cache instead of training again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from benchmarks.compression import Baseline, Recipe, run_benchmark
from benchmarks.plot import plot, points
from tests.data_folders import write_neu_folder

SIDE = 64
TINY_COMPRESSION = {
    "flops_reduction": 0.5,
    "steps": 2,
    "finetune_epochs_per_step": 0.5,
    "finetune_epochs": 1,
    "schedule": "linear",
    "lr_schedule": "onecycle",
    "allocation": "global",
    "max_layer_ratio": 0.9,
    "round_to": 1,
    "distill": True,
    "lr": 1e-3,
    "max_dice_drop": 100.0,
}
SCORE_KEYS = {"params", "macs", "miou", "miou_with_background", "dice", "dice_nonempty"}
BASELINE_KEYS = SCORE_KEYS | {"arch", "pretrained", "latency_ms", "seconds"}
METHOD_KEYS = SCORE_KEYS | {"latency_ms", "seconds", "settings"}
INT8_KEYS = SCORE_KEYS | {
    "latency_ms",
    "float_parent_latency_ms",
    "mask_dice_vs_parent",
    "settings",
}


def tiny_neu(root: Path) -> Path:
    """12 images of a bright blob (class 1) or a dark stripe (class 2) on noise, NEU's layout."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(12):
        image = rng.integers(90, 140, (SIDE, SIDE), dtype=np.uint8)
        mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
        top, left = rng.integers(8, SIDE - 24, 2)
        if index % 2:
            image[top : top + 16, left : left + 16] = 230
            mask[top : top + 16, left : left + 16] = 1
        else:
            image[:, left : left + 6] = 20
            mask[:, left : left + 6] = 2
        samples.append((image, mask, ("train", "train", "val", "test")[index % 4]))
    return write_neu_folder(root, samples)


@pytest.mark.slow
def test_every_stage_writes_the_schema_and_a_rerun_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    data = tiny_neu(tmp_path / "neu")
    recipe = Recipe(
        "tiny",
        f"neu:{data}",
        Baseline(width=0.125, epochs=1, batch_size=2, crop=(32, 32)),
        TINY_COMPRESSION,
        reference=Baseline(width=0.125, epochs=1, batch_size=2, crop=(32, 32), seed=1),
        latency_repeats=2,
    )
    results = tmp_path / "tiny-compression.json"
    summary = run_benchmark(recipe, ["fpgm", "scratch"], results)

    assert summary == json.loads(results.read_text())  # what was returned is what was written
    assert summary["dataset"] == "tiny"
    assert set(summary["host"]) >= {"cpu", "cores", "simd"}
    assert summary["commit"]
    baseline = summary["baseline"]
    assert set(baseline) >= BASELINE_KEYS
    assert set(baseline["latency_ms"]) == {"native", "256x1600"}
    assert baseline["arch"]["width_multiplier"] == 0.125
    assert baseline["pretrained"] is None
    assert baseline["miou_with_background"] > baseline["miou"] / 3  # background counts
    assert 0 <= summary["empty_prediction"]["dice"] <= 1
    assert 0 < summary["empty_prediction"]["miou_with_background"] < 1 / 3
    assert set(summary["baseline_from_scratch"]) >= BASELINE_KEYS
    assert summary["baseline_from_scratch"]["recipe"]["seed"] == 1
    assert set(summary["methods"]) == {"fpgm", "scratch", "fpgm_int8"}
    int8 = summary["methods"].pop("fpgm_int8")
    assert set(int8) >= INT8_KEYS
    assert int8["parent_version"] == summary["methods"]["fpgm"]["version"]
    assert int8["macs"] == summary["methods"]["fpgm"]["macs"]
    assert int8["settings"]["calibration"]["split"] == "train"
    assert set(summary["baseline_int8"]) >= INT8_KEYS
    assert summary["baseline_int8"]["parent_version"] == 1
    assert summary["fastest_within_1pt"] is None or summary["fastest_within_1pt"]["row"] in {
        "baseline", "fpgm", "scratch", "fpgm_int8", "baseline_int8",
    }  # fmt: skip
    for method, figures in summary["methods"].items():
        assert set(figures) >= METHOD_KEYS, method
        assert figures["macs"] <= 0.5 * baseline["macs"]
        assert figures["params"] < baseline["params"]
        assert 0 <= figures["miou"] <= 1 and 0 <= figures["dice"] <= 1
        assert set(figures["latency_ms"]) == {"native", "256x1600"}
        assert figures["settings"]["method"] == method
    # Scratch trains FPGM's architecture: the same widths, hence the same MACs.
    assert summary["methods"]["scratch"]["widths"] == summary["methods"]["fpgm"]["widths"]

    plot(summary, tmp_path / "plot.png")
    with Image.open(tmp_path / "plot.png") as drawn:
        assert drawn.size == (760, 480)
    assert [label for label, _, _ in points(summary)] == ["baseline", "fpgm", "scratch"]
    other = {**summary, "compression": {**summary["compression"], "flops_reduction": 0.9}}
    labels = [label for label, _, _ in points(summary, [other])]
    assert labels == ["baseline", "fpgm", "scratch", "fpgm -90%", "scratch -90%"]
    summary["methods"]["fpgm_int8"] = int8
    plot(summary, tmp_path / "plot.png", [other])

    cache = tmp_path / "cache" / "tiny"
    checkpoint = next(cache.glob("baseline-*/checkpoint.pt"))
    before = checkpoint.stat().st_mtime_ns
    again = run_benchmark(recipe, ["fpgm"], results)
    assert checkpoint.stat().st_mtime_ns == before  # nothing trained again
    assert again["methods"]["fpgm"]["version"] == summary["methods"]["fpgm"]["version"]
    assert again["methods"]["fpgm_int8"]["version"] == int8["version"]  # nor quantized again
    # A method whose work was removed is a new job: it publishes a version of its own.
    shutil.rmtree(next(cache.glob("baseline-*/compress-*")) / "fpgm")
    anew = run_benchmark(recipe, ["fpgm"], results)
    assert anew["methods"]["fpgm"]["version"] > again["methods"]["fpgm_int8"]["version"]

    # Figures measured against another recipe do not stay beside the new baseline's.
    changed = Recipe(
        "tiny",
        recipe.dataset,
        recipe.baseline,
        {**TINY_COMPRESSION, "finetune_epochs": 2},
        latency_repeats=2,
    )
    assert run_benchmark(changed, [], results)["methods"] == {}
    assert run_benchmark(recipe, ["fpgm"], results)["methods"].keys() == {"fpgm", "fpgm_int8"}

    # Nor do figures pruned from other weights of the same recipe (another host retrained it).
    recorded = json.loads(results.read_text())
    recorded["baseline"]["miou"] += 0.01
    results.write_text(json.dumps(recorded))
    assert run_benchmark(recipe, [], results)["methods"] == {}
