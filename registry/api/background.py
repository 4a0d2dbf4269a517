"""Work the server does beside its requests while it runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread


@asynccontextmanager
async def every(
    period_s: float, tick: Callable[[], object], last: Callable[[], object]
) -> AsyncIterator[None]:
    """While the server runs, `tick()` on a thread every `period_s` seconds; when it stops, `last()`
    (what counters held in memory, such as downloads and security events, still owe the database)."""

    async def ticking() -> None:
        while True:
            await anyio.sleep(period_s)
            await anyio.to_thread.run_sync(tick)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticking)
        try:
            yield
        finally:
            tasks.cancel_scope.cancel()
    await anyio.to_thread.run_sync(last)
