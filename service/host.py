"""The CPU this process runs on: its model, core count and the SIMD flags that pick ONNX
Runtime's and torch's kernels. Timings are recorded with it (published versions, benchmarks),
and the compression pipeline rounds pruned widths to its SIMD block."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPU_INFO = Path("/proc/cpuinfo")
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile")


def host_description(cpuinfo: Path = CPU_INFO) -> dict[str, Any]:
    """CPU model, cores, the widest float SIMD (``avx512``, ``avx2`` or ``other``) and the flags
    of ``SIMD_FLAGS`` the CPU has."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "simd": "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other",
        "flags": [flag for flag in SIMD_FLAGS if flag in flags],
    }


def machine_description(cpuinfo: Path = CPU_INFO) -> str:
    """One line for a manifest: ``AMD EPYC, 2 cores, avx512 (avx2 fma avx512f ...)``."""
    host = host_description(cpuinfo)
    return f"{host['cpu']}, {host['cores']} cores, {host['simd']} ({' '.join(host['flags'])})"


def simd_round_to(cpuinfo: Path = CPU_INFO) -> int:
    """The channel multiple for this host's widest float SIMD: ONNX Runtime's NCHWc block is 16
    floats with AVX-512 and 8 with AVX2."""
    return 16 if host_description(cpuinfo)["simd"] == "avx512" else 8
