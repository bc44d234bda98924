"""``python -m benchmarks.codec``: a benchmark runs as a module from the repository root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.codec import bench_codec

REPO = Path(__file__).resolve().parents[1]


def test_the_codec_benchmark_times_encode_and_decode() -> None:
    summary = bench_codec(repeats=3)
    assert summary["mask"] == "256x1600" and summary["repeats"] == 3
    assert 0 < summary["defect_fraction"] < 0.2  # type: ignore[operator]
    assert summary["encode_median_ms"] > 0 and summary["decode_median_ms"] > 0  # type: ignore[operator]


def test_the_module_prints_its_summary_as_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.codec", "--repeats", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["repeats"] == 2
