"""Counting a client's round trips to Redis (tests of what a send costs)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from redis.asyncio.connection import AbstractConnection

T = TypeVar("T")


class RoundTrips:
    """Counts the writes of requests to Redis: one per round trip (a pipeline is one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        send = AbstractConnection.send_packed_command

        async def counted(connection: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            self.count += 1
            await send(connection, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)

    async def of(self, call: Awaitable[T]) -> tuple[int, T]:
        """The round trips `call` made, and what it returned."""
        before = self.count
        result = await call
        return self.count - before, result
