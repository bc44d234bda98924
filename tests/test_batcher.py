"""The micro-batcher on its own: grouping, fan-out, waiting policy, failures, retirement."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.inference.batcher import Batcher


class Recorder:
    """A stand-in session: doubles the batch and remembers each batch's size and thread."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return batch * 2.0


def _batcher(run: Recorder, max_batch: int = 4, max_wait_s: float = 0.002) -> Batcher:
    return Batcher(run, max_batch=max_batch, max_wait_s=max_wait_s, model="m", version=1)


def _plane(value: float) -> np.ndarray:
    return np.full((1, 2, 3), value, dtype=np.float32)


def test_concurrent_strips_share_runs_and_get_their_own_logits() -> None:
    run = Recorder()

    async def main() -> None:
        batcher = _batcher(run, max_batch=2)
        results = await asyncio.gather(*(batcher.submit(_plane(i)) for i in range(5)))
        for index, result in enumerate(results):
            np.testing.assert_array_equal(result.logits, _plane(index) * 2.0)
        assert all(r.queue_ms >= 0 and r.inference_ms >= 0 for r in results)

    asyncio.run(main())
    assert run.sizes == [2, 2, 1]
    assert all(name.startswith("infer-m-v1") for name in run.threads)


def test_a_lone_strip_does_not_wait_for_company() -> None:
    async def main() -> float:
        batcher = _batcher(Recorder(), max_wait_s=5.0)
        start = time.perf_counter()
        await batcher.submit(_plane(1))
        return time.perf_counter() - start

    assert asyncio.run(main()) < 1.0


def test_announced_strips_are_waited_for_up_to_the_deadline() -> None:
    run = Recorder()

    async def late(batcher: Batcher, delay_s: float) -> None:
        with batcher.announce():
            await asyncio.sleep(delay_s)  # e.g. still decoding
        await batcher.submit(_plane(2))

    async def main(max_wait_s: float, delay_s: float) -> None:
        batcher = _batcher(run, max_wait_s=max_wait_s)
        task = asyncio.create_task(late(batcher, delay_s))
        await asyncio.sleep(0)  # the late one announces itself first
        await batcher.submit(_plane(1))
        await task

    asyncio.run(main(max_wait_s=2.0, delay_s=0.05))
    assert run.sizes == [2]
    run.sizes.clear()
    asyncio.run(main(max_wait_s=0.01, delay_s=0.3))
    assert run.sizes == [1, 1]


@pytest.mark.parametrize("max_runs", [1, 2])
def test_up_to_max_runs_batches_run_at_the_same_time(max_runs: int) -> None:
    run = Recorder(delay_s=0.2)

    async def main() -> float:
        batcher = Batcher(run, max_batch=1, max_wait_s=0.0, model="m", version=1, max_runs=max_runs)
        start = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit(_plane(i)) for i in range(4)))
        for index, result in enumerate(results):
            np.testing.assert_array_equal(result.logits, _plane(index) * 2.0)
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    assert run.sizes == [1, 1, 1, 1]
    assert len(run.threads) == max_runs
    # Four runs of 0.2 s: 0.8 s one at a time, 0.4 s two at a time.
    assert 0.8 / max_runs - 0.05 < elapsed < 0.8 / max_runs + 0.3


def test_a_batch_starts_beside_a_running_one_only_with_half_a_batch_waiting() -> None:
    run = Recorder(delay_s=0.3)

    async def main() -> None:
        batcher = Batcher(run, max_batch=4, max_wait_s=0.0, model="m", version=1, max_runs=2)
        tasks = [asyncio.create_task(batcher.submit(_plane(0)))]
        await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(batcher.submit(_plane(1))))
        await asyncio.sleep(0.05)
        assert run.sizes == [1]  # one strip waiting: it waits for the running batch
        tasks.append(asyncio.create_task(batcher.submit(_plane(2))))
        await asyncio.sleep(0.05)
        assert run.sizes == [1, 2]  # two waiting (half of 4): they start beside it
        await asyncio.gather(*tasks)

    asyncio.run(main())


def test_the_event_loop_keeps_running_during_a_session_run() -> None:
    async def main() -> int:
        batcher = _batcher(Recorder(delay_s=0.3))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await batcher.submit(_plane(1))
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10


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
    run = Recorder(delay_s=0.05)

    async def main() -> None:
        batcher = _batcher(run)
        pending = [asyncio.create_task(batcher.submit(_plane(i))) for i in range(3)]
        await asyncio.sleep(0)
        batcher.retire()
        await asyncio.gather(*pending)
        await asyncio.sleep(0.05)
        assert batcher._collector is not None and batcher._collector.done()
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
    wide, lane = Recorder(delay_s=0.2), Recorder(delay_s=0.2)

    async def main() -> float:
        batcher = _laned(wide, lane)
        await batcher.submit(_plane(0))  # nothing else pending: every thread
        start = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit(_plane(i)) for i in range(1, 6)))
        for index, result in enumerate(results, start=1):
            np.testing.assert_array_equal(result.logits, _plane(index) * 2.0)
        return time.perf_counter() - start

    runs = REGISTRY.get_sample_value
    labels = {"model": "laned", "version": "1"}
    before = {name: runs(RUNS, labels | {"session": name}) or 0.0 for name in SESSIONS}
    elapsed = asyncio.run(main())
    assert wide.sizes == [1]
    # Four with one more waiting: a lane; the fifth at once in the other lane, beside it.
    assert lane.sizes == [4, 1]
    assert elapsed < 0.35
    after = {name: runs(RUNS, labels | {"session": name}) for name in SESSIONS}
    assert {name: after[name] - before[name] for name in SESSIONS} == {"every_thread": 1, "lane": 2}


def test_a_lane_batch_starts_beside_one_on_every_thread_only_with_half_a_batch_waiting() -> None:
    wide, lane = Recorder(delay_s=0.3), Recorder()

    async def main() -> None:
        batcher = _laned(wide, lane)
        tasks = [asyncio.create_task(batcher.submit(_plane(0)))]
        await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(batcher.submit(_plane(1))))
        await asyncio.sleep(0.05)
        assert lane.sizes == []  # one strip waiting beside a run on every thread: it waits
        tasks.append(asyncio.create_task(batcher.submit(_plane(2))))
        await asyncio.sleep(0.05)
        assert lane.sizes == [2]  # half a batch: it starts in a lane
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert wide.sizes == [1]
