"""Tasks a pipeline stage runs beside its caller (model calls, text reading): kept until they end,
with the first failure remembered, so the call's own task can raise it instead of it being lost."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine


class Background:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.failure: BaseException | None = None  # the first task that raised

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._settled)
        return task

    def _settled(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if self.failure is None and not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()

    async def cancel(self) -> None:
        """Cancel what is still running and wait for it to end."""
        running = list(self.tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
