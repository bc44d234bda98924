"""RLE codec timing on full-size strips with realistic defect coverage.

``python -m benchmarks.codec [--repeats N]`` prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks.harness import print_json
from service import rle


def _time_ms(function: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def bench_codec(repeats: int = 200, seed: int = 0) -> dict[str, object]:
    """Median encode and decode time for a 256x1600 mask of blobs covering ~5% of pixels."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((256, 1600), dtype=np.uint8)
    for _ in range(40):
        top, left = rng.integers(0, 256 - 32), rng.integers(0, 1600 - 64)
        height, width = rng.integers(4, 32), rng.integers(8, 64)
        mask[top : top + height, left : left + width] = 1
    encoded = rle.encode(mask)
    return {
        "mask": "256x1600",
        "defect_fraction": round(float(mask.mean()), 4),
        "runs": len(encoded.split()) // 2,
        "encode_median_ms": round(_time_ms(lambda: rle.encode(mask), repeats), 4),
        "decode_median_ms": round(_time_ms(lambda: rle.decode(encoded), repeats), 4),
        "repeats": repeats,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.codec", description="time RLE encode/decode on 256x1600 masks"
    )
    parser.add_argument("--repeats", type=int, default=200, help="timed repetitions")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    print_json(bench_codec(repeats=build_parser().parse_args(argv).repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
