"""Dynamic micro-batching: concurrent requests' strips share one ONNX Runtime session run.

Requests hand in preprocessed strips; a collector task on the event loop takes the oldest one
and, while more are known to be on their way (announced, still decoding), waits for them until
the batch is full (``max_batch``) or the oldest has waited ``max_wait_s``. The batch runs as one
session call on the model's own inference thread, so the event loop is never blocked, and each
request gets its own strip's logits back (a view into the batch output, not a copy).

Waiting only for announced strips keeps a lone client from paying ``max_wait_s`` on every
request, while concurrent clients still fill batches: a strip that arrives while a batch runs
joins the next one.

Up to ``max_runs`` batches run at the same time, each on its own thread. Where the model has
lanes (``run_in_lane``: a second session of the same model whose intra-op threads are the cores'
share of one run), a lone batch — nothing else running, waiting or being decoded — runs on the
session with every thread, and a batch with company runs in a lane, at once, beside the others:
runs that split the cores between them waste none on each other, where two runs that each use
every thread preempt each other's intra-op threads mid-run and take more CPU per strip than one
run alone. Without lanes every batch goes through the one session, and a batch starts beside a
running one only once half a batch is waiting: started at once, they ran one or two strips
each, which costs more per strip than the overlap saves; the same holds for a lane run starting
beside a batch that runs on every thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service import metrics
from service.inference.outputs import Prediction, split_prediction
from service.threads import name_os_thread

RunBatch = Callable[[np.ndarray], Prediction]
"""(N, C, H, W) float32 batch -> (N, classes, H, W) logits (and (N, classes) presence logits)."""


@dataclass(frozen=True)
class BatchResult:
    """One strip's share of a batch run."""

    logits: np.ndarray
    """(classes, H, W) logits of this strip."""
    presence: np.ndarray | None
    """(classes,) presence logits of this strip, from a gated model."""
    queue_ms: float
    """From handing the strip in to the start of its batch's run."""
    inference_ms: float
    """The whole batch's run (stacking and the session call)."""


@dataclass(frozen=True)
class _Waiting:
    plane: np.ndarray
    future: asyncio.Future[BatchResult]
    since: float


class Batcher:
    """The queue of one live model version; see the module docstring."""

    def __init__(
        self,
        run: RunBatch,
        *,
        max_batch: int,
        max_wait_s: float,
        model: str,
        version: int,
        max_runs: int = 1,
        run_in_lane: RunBatch | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0 or max_runs < 1:
            raise ValueError(
                f"need max_batch >= 1, max_wait_s >= 0 and max_runs >= 1, got {max_batch}, "
                f"{max_wait_s}, {max_runs}"
            )
        self.max_batch, self.max_wait_s, self.max_runs = max_batch, max_wait_s, max_runs
        self._min_waiting_beside_wide = max(1, max_batch // 2)
        """Strips that must be waiting for a batch to start beside one that has every thread."""
        self._run, self._run_in_lane = run, run_in_lane
        self._model, self._version = model, version
        self._waiting: deque[_Waiting] = deque()
        self._announced = 0
        self._running = 0
        self._running_wide = 0
        """Of ``_running``, the runs on every thread (all of them where there are no lanes)."""
        self._runs: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        self._retired = False
        self._threads = ThreadPoolExecutor(
            max_runs,
            thread_name_prefix=f"infer-{model}-v{version}",
            initializer=name_os_thread,
            initargs=(f"infer-v{version}",),
        )

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Declare a strip on its way (being decoded), so that a forming batch waits for it."""
        self._announced += 1
        try:
            yield
        finally:
            self._announced -= 1
            self._wake.set()

    async def submit(self, plane: np.ndarray) -> BatchResult:
        """Run one (C, H, W) float32 strip in the next batch and return its logits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        self._waiting.append(_Waiting(plane, future, time.perf_counter()))
        metrics.set_queue_depth(self._model, self._version, len(self._waiting))
        self._wake.set()
        if self._collector is None or self._collector.done():
            self._collector = loop.create_task(self._collect())
        return await future

    def retire(self) -> None:
        """Stop collecting once the strips already handed in have run.

        A request that took this version before it was replaced still gets served: a late
        ``submit`` starts the collector again. The session and its thread go with the last
        reference to the model version.
        """
        self._retired = True
        self._wake.set()

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting and self._retired:
                metrics.set_queue_depth(self._model, self._version, None)
                return
            if (
                not self._waiting
                or self._running >= self.max_runs
                or (self._running_wide > 0 and len(self._waiting) < self._min_waiting_beside_wide)
            ):
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._fill(deadline=self._waiting[0].since + self.max_wait_s)
            batch = [
                self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))
            ]
            metrics.set_queue_depth(self._model, self._version, len(self._waiting))
            live = [item for item in batch if not item.future.cancelled()]
            if live:
                company = self._running or self._waiting or self._announced
                run = (self._run_in_lane if company else None) or self._run
                self._running += 1
                self._running_wide += int(run is self._run)
                task = loop.create_task(self._run_batch(live, run))
                self._runs.add(task)  # the loop keeps only weak references to tasks
                task.add_done_callback(self._runs.discard)

    async def _fill(self, deadline: float) -> None:
        """Wait for announced strips until the batch is full or the deadline has passed."""
        while len(self._waiting) < self.max_batch and self._announced > 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _run_batch(self, batch: list[_Waiting], run: RunBatch) -> None:
        """Run ``batch`` through ``run`` (every thread, or a lane) and hand out its logits."""
        started = time.perf_counter()
        planes = [item.plane for item in batch]
        wide = run is self._run
        loop = asyncio.get_running_loop()
        try:
            prediction = await loop.run_in_executor(self._threads, self._infer, run, planes)
        except Exception as error:  # the session failed: every request of the batch hears why
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            self._running -= 1
            self._running_wide -= int(wide)
            self._wake.set()
        seconds = time.perf_counter() - started
        waits = [started - item.since for item in batch]
        metrics.observe_batch(self._model, self._version, seconds, waits, in_lane=not wide)
        logits, presence = split_prediction(prediction)
        for index, (item, wait) in enumerate(zip(batch, waits, strict=True)):
            if not item.future.done():
                item.future.set_result(
                    BatchResult(
                        logits[index],
                        None if presence is None else presence[index],
                        wait * 1000.0,
                        seconds * 1000.0,
                    )
                )

    @staticmethod
    def _infer(run: RunBatch, planes: list[np.ndarray]) -> Prediction:
        batch = planes[0][np.newaxis] if len(planes) == 1 else np.stack(planes)
        return run(batch)
