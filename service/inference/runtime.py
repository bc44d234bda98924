"""ONNX Runtime sessions for a model version: the only inference engine of the API process."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.inference.outputs import Prediction
from service.inference.spinning import SpinMode

DEFAULT_PROVIDERS: tuple[str, ...] = ("CPUExecutionProvider",)


def available_providers(requested: Sequence[str]) -> list[str]:
    """The requested providers this onnxruntime build offers, in order; CPU always last."""
    offered = set(ort.get_available_providers())
    chosen = [p for p in requested if p in offered and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


@functools.cache
def _shared_cpu_arena() -> None:
    """Register one CPU arena with ONNX Runtime's environment, for every session to share.

    An arena keeps the most memory its session's runs ever needed at once, and sessions do not
    run at their peaks at the same time (a lone batch on every thread, batches in lanes, the old
    and new version during a promotion): one arena for all of them holds far less than one
    each, at the same speed. No arena at all would cost CPU on every run.
    """
    memory = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))


class OnnxSegmenter:
    """Runs (N, C, H, W) float32 batches through a segmentation ONNX model to logits.

    ``spinning`` says when the intra-op threads busy-wait for work instead of sleeping:
    ``off`` never; ``during_runs`` between the parallel sections of one run (a run is many short
    sections, one per operator, and waking sleeping threads for each costs time) but not after
    the run, so the cores are free for decoding, post-processing and HTTP between runs; ``on``
    also for a while after each run (ONNX Runtime's default), which only a process that does
    nothing else between runs can afford.

    Memory patterns (planned allocations, cached per input shape) are off: with batches of
    every size the batcher forms they made the process far larger, for no measurable speed-up.

    Every session's CPU tensors come from one arena shared by the whole process (see
    ``_shared_cpu_arena``), not one arena per session.
    """

    def __init__(
        self,
        model_path: Path,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        intra_op_threads: int | None = None,
        spinning: SpinMode = "off",
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "0" if spinning == "off" else "1"
        )
        if spinning == "during_runs":
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.enable_mem_pattern = False
        _shared_cpu_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=available_providers(providers)
        )
        self.input_name = self.session.get_inputs()[0].name
        self.gated = len(self.session.get_outputs()) > 1
        """The graph's second output is the presence logits of a presence head."""

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def __call__(self, batch: np.ndarray) -> Prediction:
        """The logits, and the presence logits of a gated graph."""
        outputs = self.session.run(None, {self.input_name: batch})
        return (outputs[0], outputs[1]) if self.gated else outputs[0]
