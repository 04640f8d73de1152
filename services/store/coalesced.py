"""Reads of concurrent requests in one round trip: the GETs and HMGETs asked for during one
turn of the event loop go to Redis together, one pipeline, on the next turn.

Alone, one read costs redis.asyncio a connection from the pool, a write and a read system
call and the asyncio machinery around them (about 50 µs of CPU); in a pipeline of 50, about
12 µs each. Under load many requests read at once (every `/auth/verify` and every request
signed in by a cookie or a bearer token reads its session or token family), so their reads
share the round trip (bench/forward_auth.py, docs/PERFORMANCE.md). A read waits one turn of
the loop for company; a lone read is sent as the plain command.

Nothing is made atomic or reordered that was not: each command is a single-key read, sent
after the caller asked for it, and fails (a refused command, or the whole round trip: a
connection lost, a timeout) as it would have alone. On a Redis Cluster the pipeline splits
by node (redis-py's ClusterPipeline), one round trip per node, in parallel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from services.store.redisclient import RedisClient

Command = tuple[str, ...]
Waiting = list[tuple[Command, asyncio.Future[Any]]]


class CoalescedReads:
    """Single-key reads of one Redis client, coalesced per turn of the event loop."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._waiting: Waiting = []
        self._rounds: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    # Plain functions returning the answer's future: the read is asked when called, not when
    # first awaited, so of reads called together none can miss the round trip.
    def get(self, key: str) -> asyncio.Future[str | None]:
        """GET key."""
        return self._ask("GET", key)

    def hmget(self, key: str, fields: Sequence[str]) -> asyncio.Future[list[str | None]]:
        """HMGET key field…: the values, None for a field (or key) that does not exist."""
        return self._ask("HMGET", key, *fields)

    def _ask(self, *command: str) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.append((command, answer))
        return answer

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._round_trip(batch))
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    async def _round_trip(self, batch: Waiting) -> None:
        try:
            if len(batch) == 1:
                replies: list[Any] = [await self._redis.execute_command(*batch[0][0])]
            else:
                pipeline = self._redis.pipeline(transaction=False)
                for command, _ in batch:
                    pipeline.execute_command(*command)
                replies = list(await pipeline.execute(raise_on_error=False))
        except BaseException as error:  # the round trip failed: so did every read in it
            for _, answer in batch:
                if answer.done():
                    continue
                if isinstance(error, Exception):
                    answer.set_exception(error)
                else:
                    answer.cancel()
            if not isinstance(error, Exception):
                raise
            return
        for (_, answer), reply in zip(batch, replies, strict=True):
            if answer.done():  # its request was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                answer.set_exception(reply)
            else:
                answer.set_result(reply)
