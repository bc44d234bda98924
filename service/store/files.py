"""The file names of a model version, and the one way this project writes a JSON file.

Torch-free like the rest of the store, so that the API (which serves ``ONNX_FILE``), the job
checks (which need ``WEIGHTS_FILE``) and the worker (which writes both) share one definition.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST_FILE = "manifest.json"
"""Written by the store itself; it hashes every other file of the version."""
ONNX_FILE = "model.onnx"
"""What the API serves."""
WEIGHTS_FILE = "weights.safetensors"
"""What a worker prunes and fine-tunes; with the architecture in the manifest it rebuilds the
net (safetensors: no pickles)."""


def write_json(path: Path, payload: object) -> None:
    """Write ``payload`` to a temporary file, fsync it, rename it over ``path`` and fsync the
    folder: readers see the old file or the new one, never half of one, and a crash right after
    the call does not lose it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as handle:
        handle.write(json.dumps(payload, indent=2, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
