"""What every benchmark shares: the host it ran on and results files merged stage by stage."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile")


def host_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, cores, the widest float SIMD (``avx512`` or ``avx2``) and the flags that
    decide ONNX Runtime's and torch's kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            if flags and model:
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "simd": "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other",
        "flags": [flag for flag in SIMD_FLAGS if flag in flags],
    }


def read_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write(path: Path, results: dict[str, Any]) -> None:
    """Write beside, then rename over: a run cut off mid-write leaves the old figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    staging.replace(path)


def update_results(path: Path, **fields: Any) -> dict[str, Any]:
    """Set top-level fields of the results file, keeping every method's figures."""
    results = read_results(path)
    results.update(fields)
    results.setdefault("methods", {})
    _write(path, results)
    return results


def update_method(
    path: Path, method: str, figures: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """Set one method's figures (and top-level ``fields`` such as the commit)."""
    results = read_results(path)
    results.update(fields)
    results.setdefault("methods", {})[method] = figures
    _write(path, results)
    return results
