"""The micro-batcher on its own: grouping, fan-out, waiting policy, failures, retirement."""

from __future__ import annotations

import asyncio
import queue
import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.inference.batcher import Batcher

GUARD_S = 30.0
"""How long a test waits for something that must happen: only so that a broken batcher fails
the test instead of hanging it. Nothing here measures time."""


class Recorder:
    """A stand-in session: doubles the batch and remembers each batch's size and thread.

    Each run reports its size on ``started`` as it begins. With ``hold``, a run waits for the
    event before it ends, so the test decides when; with ``together``, runs wait at the barrier
    for each other, so it breaks (and the run fails) unless that many run at the same time.
    """

    def __init__(
        self, hold: threading.Event | None = None, together: threading.Barrier | None = None
    ) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.started: queue.Queue[int] = queue.Queue()
        self.hold, self.together = hold, together

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        self.threads.add(threading.current_thread().name)
        self.started.put(len(batch))
        if self.together is not None:
            self.together.wait(GUARD_S)
        if self.hold is not None and not self.hold.wait(GUARD_S):
            raise TimeoutError("the test never let this run end")
        return batch * 2.0

    async def next_start(self) -> int:
        """The size of the next run to begin, once it has begun."""
        return await asyncio.to_thread(self.started.get, timeout=GUARD_S)


def _batcher(run: Recorder, max_batch: int = 4, max_wait_s: float = 0.002) -> Batcher:
    return Batcher(run, max_batch=max_batch, max_wait_s=max_wait_s, model="m", version=1)


def _plane(value: float) -> np.ndarray:
    return np.full((1, 2, 3), value, dtype=np.float32)


async def _yield_to_the_loop(times: int = 10) -> None:
    """Let every task that can run take its turn (the collector included); no time passes."""
    for _ in range(times):
        await asyncio.sleep(0)


def test_concurrent_strips_share_runs_and_get_their_own_logits() -> None:
    run = Recorder()

    async def main() -> None:
        batcher = _batcher(run, max_batch=2)
        results = await asyncio.gather(*(batcher.submit(_plane(i)) for i in range(5)))
        for index, result in enumerate(results):
            np.testing.assert_array_equal(result.logits, _plane(index) * 2.0)
        first, second, third = results[0:2], results[2:4], results[4]
        # A batch's strips share its run; the last strip waited through both runs before it.
        assert first[0].inference_ms == first[1].inference_ms
        assert second[0].inference_ms == second[1].inference_ms
        assert third.queue_ms >= first[0].inference_ms + second[0].inference_ms

    asyncio.run(main())
    assert run.sizes == [2, 2, 1]
    assert all(name.startswith("infer-m-v1") for name in run.threads)


def test_a_lone_strip_does_not_wait_for_company() -> None:
    run = Recorder()

    async def main() -> None:
        batcher = _batcher(run, max_wait_s=3600.0)
        task = asyncio.create_task(batcher.submit(_plane(1)))
        assert await run.next_start() == 1  # it ran alone, long before its hour was up
        await task

    asyncio.run(main())


def test_announced_strips_are_waited_for_up_to_the_deadline() -> None:
    run = Recorder()

    async def late(batcher: Batcher, decoded: asyncio.Event) -> None:
        with batcher.announce():
            await decoded.wait()  # e.g. still decoding
        await batcher.submit(_plane(2))

    async def waited_for() -> None:
        batcher = _batcher(run, max_wait_s=3600.0)
        decoded = asyncio.Event()
        task = asyncio.create_task(late(batcher, decoded))
        await asyncio.sleep(0)  # the late one announces itself first
        first = asyncio.create_task(batcher.submit(_plane(1)))
        await _yield_to_the_loop()  # the batch forms and waits
        decoded.set()
        await asyncio.wait_for(asyncio.gather(first, task), GUARD_S)

    async def given_up_on() -> None:
        batcher = _batcher(run, max_wait_s=0.01)
        decoded = asyncio.Event()
        task = asyncio.create_task(late(batcher, decoded))
        await asyncio.sleep(0)
        await asyncio.wait_for(batcher.submit(_plane(1)), GUARD_S)  # ran at the deadline
        decoded.set()  # only now does the late one arrive
        await asyncio.wait_for(task, GUARD_S)

    asyncio.run(waited_for())
    assert run.sizes == [2]
    run.sizes.clear()
    asyncio.run(given_up_on())
    assert run.sizes == [1, 1]


@pytest.mark.parametrize("max_runs", [1, 2])
def test_up_to_max_runs_batches_run_at_the_same_time(max_runs: int) -> None:
    inside, most, lock = [0], [0], threading.Lock()

    class Counting(Recorder):
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            try:
                return super().__call__(batch)
            finally:
                with lock:
                    inside[0] -= 1

    # The barrier holds each run until max_runs of them are running.
    run = Counting(together=threading.Barrier(max_runs))

    async def main() -> None:
        batcher = Batcher(run, max_batch=1, max_wait_s=0.0, model="m", version=1, max_runs=max_runs)
        results = await asyncio.gather(*(batcher.submit(_plane(i)) for i in range(4)))
        for index, result in enumerate(results):
            np.testing.assert_array_equal(result.logits, _plane(index) * 2.0)

    asyncio.run(main())
    assert run.sizes == [1, 1, 1, 1]
    assert len(run.threads) == max_runs
    assert most[0] == max_runs


def test_a_batch_starts_beside_a_running_one_only_with_half_a_batch_waiting() -> None:
    run = Recorder(hold=threading.Event())

    async def main() -> None:
        batcher = Batcher(run, max_batch=4, max_wait_s=0.0, model="m", version=1, max_runs=2)
        tasks = [asyncio.create_task(batcher.submit(_plane(0)))]
        assert await run.next_start() == 1
        tasks.append(asyncio.create_task(batcher.submit(_plane(1))))
        await _yield_to_the_loop()  # one strip waiting: it waits for the running batch
        tasks.append(asyncio.create_task(batcher.submit(_plane(2))))
        assert await run.next_start() == 2  # two waiting (half of 4): they start beside it
        run.hold.set()  # type: ignore[union-attr]
        await asyncio.wait_for(asyncio.gather(*tasks), GUARD_S)

    asyncio.run(main())
    assert run.sizes == [1, 2]


def test_the_event_loop_keeps_running_during_a_session_run() -> None:
    run = Recorder(hold=threading.Event())

    async def main() -> None:
        batcher = _batcher(run)
        task = asyncio.create_task(batcher.submit(_plane(1)))
        await run.next_start()
        run.hold.set()  # type: ignore[union-attr]  # the loop ran this while the run waited
        await asyncio.wait_for(task, GUARD_S)

    asyncio.run(main())


def test_a_failed_run_fails_every_strip_of_its_batch_and_no_other() -> None:
    class Flaky(Recorder):
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            if len(self.sizes) == 0:
                self.sizes.append(len(batch))
                raise RuntimeError("session failed")
            return super().__call__(batch)

    async def main() -> list[object]:
        batcher = _batcher(Flaky(), max_batch=2)
        return await asyncio.gather(
            *(batcher.submit(_plane(i)) for i in range(3)), return_exceptions=True
        )

    first, second, third = asyncio.run(main())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert not isinstance(third, BaseException)


def test_a_retired_batcher_finishes_its_queue_and_still_serves_late_strips() -> None:
    run = Recorder()

    async def main() -> None:
        batcher = _batcher(run)
        pending = [asyncio.create_task(batcher.submit(_plane(i))) for i in range(3)]
        await asyncio.sleep(0)
        batcher.retire()
        await asyncio.gather(*pending)
        assert batcher._collector is not None
        ended, _ = await asyncio.wait({batcher._collector}, timeout=GUARD_S)
        assert ended, "the retired batcher's collector went on after its queue was empty"
        late = await batcher.submit(_plane(9))  # took the version just before it was replaced
        np.testing.assert_array_equal(late.logits, _plane(9) * 2.0)

    asyncio.run(main())
    assert sum(run.sizes) == 4


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        _batcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="max_runs"):
        Batcher(Recorder(), max_batch=1, max_wait_s=0.0, model="m", version=1, max_runs=0)


RUNS = "strip_inspection_session_runs_total"
SESSIONS = ("every_thread", "lane")


def _laned(wide: Recorder, lane: Recorder, max_batch: int = 4) -> Batcher:
    return Batcher(
        wide,
        run_in_lane=lane,
        max_batch=max_batch,
        max_wait_s=0.0,
        model="laned",
        version=1,
        max_runs=2,
    )


def test_a_lone_batch_runs_on_every_thread_and_batches_with_company_in_lanes() -> None:
    # The two lane runs wait for each other: they must run at the same time.
    wide, lane = Recorder(), Recorder(together=threading.Barrier(2))

    async def main() -> None:
        batcher = _laned(wide, lane)
        await batcher.submit(_plane(0))  # nothing else pending: every thread
        results = await asyncio.gather(*(batcher.submit(_plane(i)) for i in range(1, 6)))
        for index, result in enumerate(results, start=1):
            np.testing.assert_array_equal(result.logits, _plane(index) * 2.0)

    runs = REGISTRY.get_sample_value
    labels = {"model": "laned", "version": "1"}
    before = {name: runs(RUNS, labels | {"session": name}) or 0.0 for name in SESSIONS}
    asyncio.run(main())
    assert wide.sizes == [1]
    # Four with one more waiting: a lane; the fifth at once in the other lane, beside it.
    assert sorted(lane.sizes) == [1, 4]
    after = {name: runs(RUNS, labels | {"session": name}) for name in SESSIONS}
    assert {name: after[name] - before[name] for name in SESSIONS} == {"every_thread": 1, "lane": 2}


def test_a_lane_batch_starts_beside_one_on_every_thread_only_with_half_a_batch_waiting() -> None:
    wide, lane = Recorder(hold=threading.Event()), Recorder()

    async def main() -> None:
        batcher = _laned(wide, lane)
        tasks = [asyncio.create_task(batcher.submit(_plane(0)))]
        assert await wide.next_start() == 1
        tasks.append(asyncio.create_task(batcher.submit(_plane(1))))
        await _yield_to_the_loop()  # one strip waiting beside a run on every thread: it waits
        tasks.append(asyncio.create_task(batcher.submit(_plane(2))))
        assert await lane.next_start() == 2  # half a batch: it starts in a lane
        wide.hold.set()  # type: ignore[union-attr]
        await asyncio.wait_for(asyncio.gather(*tasks), GUARD_S)

    asyncio.run(main())
    assert (wide.sizes, lane.sizes) == ([1], [2])
