"""Every API process follows its served alias in the model store.

The store's ``aliases.json`` is the one truth about which version an alias means: every process
already loads its versions from the store, so a second copy (in Postgres) would only be one more
thing to drift from it. ``AliasFollower`` re-reads the served alias every ``interval_s`` (one
small file read); when another process moved it (a promotion through another replica, or the
CLI), ``ModelSlot.catch_up`` loads and warms the version off the request path and swaps it in.
Every replica therefore serves a promoted version within one interval plus its load and warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.inference.inspector import ModelSlot

logger = logging.getLogger(__name__)


class AliasFollower:
    def __init__(self, slot: ModelSlot, interval_s: float) -> None:
        self.slot, self.interval_s = slot, interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin following; call it on the event loop, where swaps happen (batchers live there)."""
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="alias-follower")

    async def stop(self) -> None:
        """Stop following (a load under way finishes first: it runs in a thread)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.slot.catch_up()
            except Exception:  # the task must outlive any one failure: log and look again
                logger.exception(
                    "following %s@%s failed; looking again in %.1f s",
                    self.slot.name,
                    self.slot.alias,
                    self.interval_s,
                )
