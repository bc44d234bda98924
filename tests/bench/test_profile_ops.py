"""The operator profile: ONNX Runtime's kernel times summed by operator type, nothing left in
the store."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.profile_ops import main
from service.store import ModelStore


def test_the_profile_sums_kernel_time_by_operator_and_writes_nothing_beside_the_version(
    model_store: ModelStore, tmp_path: Path
) -> None:
    before = sorted(p.name for p in (model_store.root / "unet-tiny" / "1").iterdir())
    out = tmp_path / "profile.json"
    argv = ["--store", str(model_store.root), "--model", "unet-tiny", "--refs", "1"]
    assert main([*argv, "--size", "64x96", "--runs", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    measured = figures["versions"]["v1"]
    assert measured["precision"] == "float32"
    assert "Conv" in measured["kernels_ms"]
    assert 0 < sum(measured["kernels_ms"].values()) <= 2 * measured["run_ms_median"]
    assert figures["size"] == [64, 96]
    assert sorted(p.name for p in (model_store.root / "unet-tiny" / "1").iterdir()) == before
