"""RLE codec timing on full-size strips with realistic defect coverage."""

from __future__ import annotations

import statistics
import time

import numpy as np

from service import rle


def _time_ms(function, repeats: int) -> float:
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
