"""One background task of a service: started once on the event loop, cancelled and awaited on
close (the lag sampler of admission, the keyring watcher of tokens)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundTask:
    """At most one running task; close() stops it and waits for it to end."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run work() in the background, unless it already runs."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(work())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
