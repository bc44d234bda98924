"""A published model version ready to inspect strips: verified, in ONNX Runtime, batched, warm.

Turns a strip into defects: per-class masks (threshold and minimum area from the manifest), each
with its RLE, area, score (mean probability inside the mask) and bounding box. ``ModelSlot``
holds the live version and swaps in a new one, loaded and warmed first, when its alias moves.
Knows nothing of HTTP or the database."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np

from service import rle
from service.defects import DefectValues
from service.inference.batcher import Batcher, BatchResult
from service.inference.decode import decode_strip
from service.inference.outputs import split_prediction
from service.inference.postprocess import LogitCut, gate_closed, mean_probability, sigmoid
from service.inference.preprocess import prepare_batch
from service.inference.runtime import DEFAULT_PROVIDERS, OnnxSegmenter, available_providers
from service.inference.spinning import SpinMode
from service.metrics import count_model_swap_failure, set_live_model
from service.store import ONNX_FILE, Manifest, ModelStore, ModelVersion, StoreError

logger = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """A version that verified but cannot serve (unreadable ONNX, inconsistent manifest, wrong
    output shape)."""


@dataclass(frozen=True)
class ServingOptions:
    """How a version runs: ONNX Runtime providers and threads, batching, warm-up."""

    providers: Sequence[str] = DEFAULT_PROVIDERS
    threads: int | None = None
    """Intra-op threads of the session; None: one per core."""
    spinning: SpinMode = "off"
    """When the session's threads busy-wait for work (see ``OnnxSegmenter``)."""
    max_batch: int = 8
    max_wait_ms: float = 2.0
    runs: int = 1
    """Batches that may run at the same time (see ``Batcher`` and ``lane_threads``)."""
    warmup_runs: int = 1
    """Runs of every batch size 1..max_batch before the version is ready."""


def session_threads(options: ServingOptions) -> int:
    """Intra-op threads of the session that runs lone batches: as configured, else the cores."""
    return options.threads or os.cpu_count() or 1


def lane_threads(options: ServingOptions) -> int | None:
    """Intra-op threads of the lane session (``runs`` batches at once share the cores), or None
    where there are no lanes: one run at a time, one thread, or a GPU provider (its runs do not
    split the cores, and a second session would take a second copy of the model's GPU memory).
    """
    threads = session_threads(options)
    on_cpu_only = available_providers(options.providers) == ["CPUExecutionProvider"]
    if options.runs < 2 or threads < 2 or not on_cpu_only:
        return None
    return max(1, threads // options.runs)


@dataclass(frozen=True)
class Decoded:
    """A strip decoded into the model's input plane, with the time that took."""

    plane: np.ndarray
    decode_ms: float


@dataclass(frozen=True)
class Findings:
    defects: list[DefectValues]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    """The session run of the whole batch the strip was part of."""
    postprocess_ms: float

    @property
    def timings_ms(self) -> dict[str, float]:
        return {
            "decode": self.decode_ms,
            "queue": self.queue_ms,
            "inference": self.inference_ms,
            "postprocess": self.postprocess_ms,
        }


class Inspector:
    """One model version: its session, its batcher and its post-processing rules."""

    def __init__(self, version: ModelVersion, options: ServingOptions) -> None:
        self.manifest: Manifest = version.manifest
        self.options = options
        self._rules = sorted(self.manifest.postprocess, key=lambda rule: rule.class_id)
        self._class_names = {spec.id: spec.name for spec in self.manifest.classes}
        if sorted(self._class_names) != [rule.class_id for rule in self._rules]:
            raise ModelLoadError(
                f"{self.name} v{self.version}: classes {sorted(self._class_names)} and "
                f"post-processing rules {[r.class_id for r in self._rules]} disagree"
            )
        self._cuts = [LogitCut.of(rule) for rule in self._rules]
        self.segmenter = self._session(version, session_threads(options))
        gated = [rule.class_id for rule in self._rules if rule.gate is not None]
        if gated and not self.segmenter.gated:
            raise ModelLoadError(
                f"{self.name} v{self.version}: classes {gated} have a gate but {ONNX_FILE} has "
                "no presence output"
            )
        lanes = lane_threads(options)
        self.lane_segmenter = None if lanes is None else self._session(version, lanes)
        self.batcher = Batcher(
            self.segmenter,
            run_in_lane=self.lane_segmenter,
            max_batch=options.max_batch,
            max_wait_s=options.max_wait_ms / 1000.0,
            max_runs=options.runs,
            model=self.name,
            version=self.version,
        )
        self.warmed = False

    def _session(self, version: ModelVersion, threads: int) -> OnnxSegmenter:
        try:
            return OnnxSegmenter(
                version.file(ONNX_FILE), self.options.providers, threads, self.options.spinning
            )
        except Exception as error:  # ONNX Runtime raises its own types for unreadable models
            raise ModelLoadError(
                f"{self.name} v{self.version}: ONNX Runtime cannot load {ONNX_FILE}: {error}"
            ) from error

    @classmethod
    def load(
        cls, store: ModelStore, name: str, ref: int | str, options: ServingOptions
    ) -> Inspector:
        """Load ``name`` at ``ref`` (version or alias) after verifying its hashes, and warm it."""
        inspector = cls(store.load(name, ref), options)
        inspector.warm_up()
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

    def warm_up(self) -> None:
        """Run blank batches of every size the batcher may form through each session (the
        lanes' too), and check the output shape.

        ONNX Runtime's first runs of each input shape are slow (memory arenas grow, kernels are
        chosen); doing them here keeps them off the first requests after a start or a swap.
        """
        plane = prepare_batch([np.zeros(self.shape, dtype=np.uint8)], self.manifest.input)[0]
        sessions = [s for s in (self.segmenter, self.lane_segmenter) if s is not None]
        for size in range(1, self.options.max_batch + 1):
            batch = np.repeat(plane[np.newaxis], size, axis=0)
            try:
                for _, session in itertools.product(range(self.options.warmup_runs), sessions):
                    logits, presence = split_prediction(session(batch))
            except Exception as error:  # e.g. an input the manifest describes wrongly
                raise ModelLoadError(
                    f"{self.name} v{self.version}: a blank batch of {size} fails: {error}"
                ) from error
            self._check_shapes(size, logits, presence, plane.shape[1:])
        self.find_defects(logits[0], None if presence is None else presence[0])
        rle.warm_up()
        self.warmed = True

    def _check_shapes(
        self,
        size: int,
        logits: np.ndarray,
        presence: np.ndarray | None,
        plane_shape: tuple[int, ...],
    ) -> None:
        classes = len(self._rules)
        expected = (size, classes, *plane_shape)
        if logits.shape != expected:
            raise ModelLoadError(
                f"{self.name} v{self.version}: the model returns {logits.shape} for a batch "
                f"of {size}, the manifest implies {expected}"
            )
        if presence is not None and presence.shape != (size, classes):
            raise ModelLoadError(
                f"{self.name} v{self.version}: the presence output is {presence.shape} for a "
                f"batch of {size}, the manifest implies {(size, classes)}"
            )

    def prepare(self, data: bytes, content_type: str) -> np.ndarray:
        """Decode and validate a body (see ``decode_strip``) into the (C, H', W') input plane."""
        strip = decode_strip(data, content_type, height=self.shape[0], width=self.shape[1])
        return prepare_batch([strip], self.manifest.input)[0]

    def find_defects(
        self, logits: np.ndarray, presence: np.ndarray | None = None
    ) -> list[DefectValues]:
        """(classes, H', W') logits (and (classes,) presence logits) of one strip -> its
        defects, ordered by class id.

        The masks are those of ``probabilities_to_masks(sigmoid(logits), rules,
        sigmoid(presence))`` (what evaluation scores), computed without a sigmoid over the
        whole strip: see ``LogitCut``. A class its gate drops costs no pixel pass at all. The
        classes are post-processed one after the other, not on threads of their own: the
        passes are memory-bound and take the GIL in between, so splitting them made a lone
        strip slower.
        """
        height, width = self.shape
        scores = [None] * len(self._rules) if presence is None else sigmoid(presence).tolist()
        found = (
            self._class_defect(channel, logits[channel, :height, :width])
            for channel in range(len(self._rules))
            if not gate_closed(self._rules[channel], scores[channel])
        )
        return [defect for defect in found if defect is not None]

    def _class_defect(self, channel: int, class_logits: np.ndarray) -> DefectValues | None:
        rule, cut = self._rules[channel], self._cuts[channel]
        mask, values = cut.select(class_logits)
        area = values.size
        if area == 0 or area < rule.min_area:
            return None
        rows = np.flatnonzero(mask.any(axis=1))
        columns = np.flatnonzero(mask.any(axis=0))
        return DefectValues(
            class_id=rule.class_id,
            class_name=self._class_names[rule.class_id],
            encoded_pixels=rle.encode(mask),
            area_px=area,
            score=mean_probability(values),
            bbox=(int(columns[0]), int(rows[0]), int(columns[-1]), int(rows[-1])),
        )

    def decode(self, data: bytes, content_type: str) -> Decoded:
        """``prepare``, timed: run it in a worker thread, inside ``announce``."""
        start = time.perf_counter()
        plane = self.prepare(data, content_type)
        return Decoded(plane, (time.perf_counter() - start) * 1000.0)

    def announce(self) -> AbstractContextManager[None]:
        """Tell the batcher a strip is being decoded, so that a forming batch waits for it."""
        return self.batcher.announce()

    async def infer(self, decoded: Decoded) -> BatchResult:
        """Run a decoded strip in the next batch."""
        return await self.batcher.submit(decoded.plane)

    def postprocess(self, decoded: Decoded, result: BatchResult) -> Findings:
        """Post-process a strip's logits into its findings (CPU work: off the event loop).

        ``service.inspection`` runs this and the recording of the result in one worker thread:
        each hop between the event loop and a thread costs a fraction of a millisecond per request.
        """
        start = time.perf_counter()
        defects = self.find_defects(result.logits, result.presence)
        return Findings(
            defects=defects,
            decode_ms=decoded.decode_ms,
            queue_ms=result.queue_ms,
            inference_ms=result.inference_ms,
            postprocess_ms=(time.perf_counter() - start) * 1000.0,
        )


class ModelSlot:
    """The live version of the served (model, alias); it is replaced whole when the alias moves,
    through this process (``move_alias``) or another (``catch_up``, which ``AliasFollower`` runs
    every few seconds).

    A swap is one reference assignment, so a request keeps the version it started with while
    the next one gets the new version; the old version's batcher is retired once the strips
    already handed to it have run. Moves and catch-ups take turns (one lock), so a version this
    process promoted is never loaded a second time by its own catch-up.
    """

    def __init__(self, store: ModelStore, name: str, alias: str, options: ServingOptions) -> None:
        self.store, self.name, self.alias, self.options = store, name, alias, options
        self._inspector: Inspector | None = None
        self.problem: str | None = "no model loaded yet"
        self._refused: tuple[int, str] | None = None
        """The version the alias points at that this process could not load, and why."""
        self._moving = asyncio.Lock()

    @property
    def inspector(self) -> Inspector | None:
        return self._inspector

    def load(self) -> None:
        """Load, verify and warm the version the served alias points at, then make it live.

        A failure leaves the service up but not ready (``problem`` says why), so that probes
        and operators can see the reason instead of a crash loop.
        """
        version = self._alias_version()
        if version is None:
            return
        try:
            inspector = Inspector.load(self.store, self.name, version, self.options)
        except Exception as error:  # any load failure: keep serving probes, report the reason
            self._refuse(version, error)
            return
        self._make_live(inspector)

    async def move_alias(self, name: str, alias: str, version: int) -> int | None:
        """Point ``alias`` of ``name`` at ``version``; returns the version it pointed at before.

        For the served alias the version is verified, loaded and warmed before the alias moves
        and the swap happens; if any of that fails the error propagates (``StoreError``,
        ``ModelLoadError``, ``ValueError``) and the live version stays. Rollback is the same.
        """
        async with self._moving:
            previous = self.store.aliases(name).get(alias)
            live = self._inspector
            served = (name, alias) == (self.name, self.alias)
            if not served or (live is not None and live.version == version):
                await anyio.to_thread.run_sync(self.store.set_alias, name, alias, version)
                return previous
            inspector = await anyio.to_thread.run_sync(
                Inspector.load, self.store, name, version, self.options
            )
            try:
                await anyio.to_thread.run_sync(self.store.set_alias, name, alias, version)
            except BaseException:
                inspector.batcher.retire()
                raise
            self._make_live(inspector)
            return previous

    async def catch_up(self) -> None:
        """Serve the version the served alias points at now, if another process moved it.

        The version is verified, loaded and warmed in a worker thread, off the request path,
        then swapped in as a promotion here is. One that fails is refused: the live version
        goes on serving, ``status`` and the swap-failure metric say so, and it is not tried
        again until the alias has moved.
        """
        async with self._moving:
            version = await anyio.to_thread.run_sync(self._alias_version)
            live = self._inspector
            if version is None or (self._refused is not None and self._refused[0] == version):
                return
            if live is not None and live.version == version:
                self._refused = None
                return
            try:
                inspector = await anyio.to_thread.run_sync(
                    Inspector.load, self.store, self.name, version, self.options
                )
            except Exception as error:  # any load failure: the live version stays
                self._refuse(version, error)
                return
            self._make_live(inspector)

    def status(self) -> dict[str, Any] | None:
        """The live version and alias, with the version the alias points at and why this
        process does not serve it, when it could not load it; None while nothing is live."""
        live = self._inspector
        if live is None:
            return None
        status: dict[str, Any] = {"name": live.name, "version": live.version, "alias": self.alias}
        if self._refused is not None:
            status["alias_version"], status["problem"] = self._refused
        return status

    def close(self) -> None:
        """Stop the live version's batcher once its queue has run (at shutdown)."""
        if self._inspector is not None:
            self._inspector.batcher.retire()

    def _alias_version(self) -> int | None:
        """The version the served alias points at in the store now; None when that cannot be
        read (with nothing live, ``problem`` says why)."""
        try:
            return self.store.resolve(self.name, self.alias)
        except (StoreError, OSError, ValueError) as error:  # no store, model, alias or a bad file
            if self._inspector is None:
                problem = f"cannot load {self.name}@{self.alias} from {self.store.root}: {error}"
                if problem != self.problem:
                    logger.error(problem)
                self.problem = problem
            return None

    def _refuse(self, version: int, error: Exception) -> None:
        why = f"cannot load {self.name} v{version} ({self.alias}) from {self.store.root}: {error}"
        self._refused = (version, why)
        count_model_swap_failure(self.name, version)
        live = self._inspector
        if live is None:
            self.problem = why
            logger.error(why)
        else:
            logger.error("%s; still serving v%d", why, live.version)

    def _make_live(self, inspector: Inspector) -> None:
        old, self._inspector, self.problem = self._inspector, inspector, None
        self._refused = None
        set_live_model(inspector.name, inspector.version, self.alias)
        logger.info(
            "serving %s v%d (%s) on %s",
            inspector.name,
            inspector.version,
            self.alias,
            ", ".join(inspector.segmenter.providers),
        )
        if old is not None:
            old.batcher.retire()
