"""A published version on the real Severstal strips, run exactly as the API serves it: the
same decoding, ONNX Runtime session, thresholds, minimum areas and gate (``Inspector``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from service import rle
from service.evaluation.real import RealStrip, Segment, real_strip_report, run_strips
from service.inference.inspector import Inspector, ServingOptions
from service.inference.outputs import split_prediction
from service.store import ModelStore


def evaluate_version_on_real_strips(
    store: ModelStore, name: str, ref: int | str, strips: Sequence[RealStrip]
) -> dict[str, object]:
    """The real-strip figures of ``name`` at ``ref``: as served and, for a gated version, also
    with its gate open (thresholds and minimum areas only)."""
    inspector = Inspector(store.load(name, ref), ServingOptions(max_batch=1, warmup_runs=0))
    gated = any(rule.gate is not None for rule in inspector.manifest.postprocess)
    modes = {"served": True, **({"without_gate": False} if gated else {})}
    outcomes = run_strips(strips, _segmenter(inspector, modes))
    results = {mode: real_strip_report(outcomes[mode]) for mode in modes}
    return {"model": name, "version": inspector.version, "results": results}


def _segmenter(inspector: Inspector, modes: Mapping[str, bool]) -> Segment:
    """One session run per strip, post-processed once per mode (True: with the gate)."""

    def segment(data: bytes, content_type: str) -> dict[str, dict[int, np.ndarray]]:
        plane = inspector.prepare(data, content_type)
        logits, presence = split_prediction(inspector.segmenter(plane[np.newaxis]))
        found = {}
        for mode, use_gate in modes.items():
            scores = presence[0] if presence is not None and use_gate else None
            found[mode] = {
                defect.class_id: rle.decode(defect.encoded_pixels, inspector.shape)
                for defect in inspector.find_defects(logits[0], scores)
            }
        return found

    return segment
