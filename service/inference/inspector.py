"""A published model version ready to inspect strips: verified, in ONNX Runtime, warmed up.

Turns a grey strip into defects: per-class masks (threshold and minimum area from the
manifest), each with its RLE, area, score (mean probability inside the mask) and bounding box.
Knows nothing of HTTP or the database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from service import rle
from service.inference.decode import decode_strip
from service.inference.postprocess import probabilities_to_masks, sigmoid
from service.inference.preprocess import prepare_batch
from service.inference.runtime import DEFAULT_PROVIDERS, OnnxSegmenter
from service.metrics import observe_inference
from service.store import Manifest, ModelStore, ModelVersion

ONNX_FILE = "model.onnx"
"""The served file of a version; the same name as ``service.training.publish.ONNX_FILE``,
which cannot be imported here because it imports torch."""


class ModelLoadError(Exception):
    """A version that verified but cannot serve (inconsistent manifest, wrong output shape)."""


@dataclass(frozen=True)
class Defect:
    class_id: int
    class_name: str
    encoded_pixels: str
    area_px: int
    score: float
    bbox: tuple[int, int, int, int]
    """Inclusive pixel bounds (x_min, y_min, x_max, y_max): x is the column, y the row."""


@dataclass(frozen=True)
class Findings:
    defects: list[Defect]
    inference_ms: float
    postprocess_ms: float
    decode_ms: float = 0.0

    @property
    def timings_ms(self) -> dict[str, float]:
        return {
            "decode": self.decode_ms,
            "inference": self.inference_ms,
            "postprocess": self.postprocess_ms,
        }


class Inspector:
    def __init__(
        self,
        version: ModelVersion,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int | None = None,
    ) -> None:
        self.manifest: Manifest = version.manifest
        self._rules = sorted(self.manifest.postprocess, key=lambda rule: rule.class_id)
        self._class_names = {spec.id: spec.name for spec in self.manifest.classes}
        if sorted(self._class_names) != [rule.class_id for rule in self._rules]:
            raise ModelLoadError(
                f"{self.name} v{self.version}: classes {sorted(self._class_names)} and "
                f"post-processing rules {[r.class_id for r in self._rules]} disagree"
            )
        self.segmenter = OnnxSegmenter(version.file(ONNX_FILE), providers, threads or None)
        self.warmed = False

    @classmethod
    def load(
        cls,
        store: ModelStore,
        name: str,
        ref: int | str,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int | None = None,
        warmup_runs: int = 2,
    ) -> Inspector:
        """Load ``name`` at ``ref`` (version or alias) after verifying its hashes, and warm it."""
        inspector = cls(store.load(name, ref), providers=providers, threads=threads)
        inspector.warm_up(warmup_runs)
        return inspector

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the strips this version inspects."""
        return self.manifest.input.height, self.manifest.input.width

    def warm_up(self, runs: int = 2) -> None:
        """Run blank strips through the whole path; the first ONNX Runtime runs are slow."""
        blank = np.zeros(self.shape, dtype=np.uint8)
        for _ in range(runs):
            probabilities = self.predict([blank])
        expected = (1, len(self._rules), *self.shape)
        if probabilities.shape != expected:
            raise ModelLoadError(
                f"{self.name} v{self.version}: the model returns {probabilities.shape}, "
                f"the manifest implies {expected}"
            )
        self.find_defects(probabilities[0])
        self.warmed = True

    def predict(self, strips: Sequence[np.ndarray]) -> np.ndarray:
        """(H, W) uint8 strips of one size -> (N, classes, H, W) float32 probabilities."""
        height, width = strips[0].shape
        logits = self.segmenter(prepare_batch(strips, self.manifest.input))
        return sigmoid(logits[..., :height, :width])

    def find_defects(self, probabilities: np.ndarray) -> list[Defect]:
        """(classes, H, W) probabilities of one strip -> its defects, ordered by class id."""
        masks = probabilities_to_masks(probabilities, self._rules).astype(bool, copy=False)
        defects = []
        for channel, rule in enumerate(self._rules):
            mask = masks[channel]
            area = int(np.count_nonzero(mask))
            if area == 0:
                continue
            rows = np.flatnonzero(mask.any(axis=1))
            columns = np.flatnonzero(mask.any(axis=0))
            defects.append(
                Defect(
                    class_id=rule.class_id,
                    class_name=self._class_names[rule.class_id],
                    encoded_pixels=rle.encode(mask),
                    area_px=area,
                    score=float(probabilities[channel][mask].mean()),
                    bbox=(int(columns[0]), int(rows[0]), int(columns[-1]), int(rows[-1])),
                )
            )
        return defects

    def inspect(self, strip: np.ndarray) -> Findings:
        """One strip through the model and post-processing, with the time each took."""
        start = time.perf_counter()
        probabilities = self.predict([strip])[0]
        inferred = time.perf_counter()
        defects = self.find_defects(probabilities)
        done = time.perf_counter()
        observe_inference(self.name, self.version, inferred - start)
        return Findings(
            defects=defects,
            inference_ms=(inferred - start) * 1000.0,
            postprocess_ms=(done - inferred) * 1000.0,
        )

    def inspect_image(self, data: bytes, content_type: str) -> Findings:
        """Decode and validate an encoded image or raw buffer (see ``decode_strip``), inspect it."""
        start = time.perf_counter()
        strip = decode_strip(data, content_type, height=self.shape[0], width=self.shape[1])
        decode_ms = (time.perf_counter() - start) * 1000.0
        return replace(self.inspect(strip), decode_ms=decode_ms)


class ModelSlot:
    """Holds the live inspector; a swap is one reference assignment, so a request keeps the
    inspector it started with while the next one gets the new version."""

    def __init__(self) -> None:
        self._inspector: Inspector | None = None
        self.problem: str | None = "no model loaded yet"

    @property
    def inspector(self) -> Inspector | None:
        return self._inspector

    def swap(self, inspector: Inspector) -> None:
        self._inspector = inspector
        self.problem = None

    def fail(self, problem: str) -> None:
        """Record why a load failed; a model already live stays live."""
        self.problem = problem
