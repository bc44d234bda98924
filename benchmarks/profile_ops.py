"""Where a version's time goes: ONNX Runtime's own profile, summed by operator type.

    python -m benchmarks.profile_ops --store STORE --model neu-unet --refs 1 2 3 --size 256x1600

Each version runs ``--runs`` times on one random strip with profiling on (2 threads, spinning
on, as the latency figures); the kernel times of the timed runs (after ``--warmup``) are summed
per operator type (Conv, QLinearConv, Resize, ...) and divided by the runs. Printed as a table and
written as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.cli.options import size
from service.host import host_description
from service.inference.preprocess import prepare_batch
from service.store import ONNX_FILE, ModelStore


def profile_version(
    path: Path, batch: np.ndarray, runs: int, warmup: int, threads: int
) -> dict[str, Any]:
    """Milliseconds per run by operator type, and the run's total as the profile counts it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:  # never beside the version: it is write-once
        options.profile_file_prefix = str(Path(folder) / "ort-profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: batch}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen = [e for e in events if e.get("name") == "model_run"][warmup:]
    start = runs_seen[0]["ts"] if runs_seen else 0
    by_op: dict[str, float] = defaultdict(float)
    for event in events:
        if (
            event.get("cat") == "Node"
            and event["name"].endswith("_kernel_time")
            and (event["ts"] >= start)
        ):
            by_op[event["args"]["op_name"]] += event["dur"] / 1000 / runs
    run_ms = float(np.median([e["dur"] / 1000 for e in runs_seen])) if runs_seen else 0.0
    return {
        "run_ms_median": run_ms,
        "kernels_ms": dict(sorted(by_op.items(), key=lambda item: -item[1])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_ops", description=__doc__)
    parser.add_argument("--store", type=Path, required=True, help="model store folder")
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--refs", nargs="+", required=True, help="versions or aliases")
    parser.add_argument("--size", type=size, default=(256, 1600), help="HEIGHTxWIDTH")
    parser.add_argument("--runs", type=int, default=20, help="profiled runs of each version")
    parser.add_argument("--warmup", type=int, default=3, help="runs left out first")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    rng = np.random.default_rng(0)
    height, width = args.size
    figures: dict[str, Any] = {"host": host_description(), "size": [height, width], "versions": {}}
    for ref in args.refs:
        version = store.load(args.model, ref)
        spec = version.manifest.input.model_copy(update={"height": height, "width": width})
        batch = prepare_batch([rng.integers(0, 256, (height, width), dtype=np.uint8)], spec)
        measured = profile_version(
            version.file(ONNX_FILE), batch, args.runs, args.warmup, args.threads
        )
        measured["precision"] = version.manifest.precision
        figures["versions"][f"v{version.manifest.version}"] = measured
        kernels = ", ".join(f"{op} {ms:.2f}" for op, ms in list(measured["kernels_ms"].items())[:8])
        print(
            f"v{version.manifest.version} ({measured['precision']}): "
            f"{measured['run_ms_median']:.2f} ms a run; {kernels}"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
