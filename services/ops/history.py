"""Per-minute counts of what happens to sends, kept in Redis for the operator console.

Each process adds events to a small table in memory (a dict increment, no I/O on the request
path) and writes it every FLUSH_SECONDS in one pipelined round trip: one HINCRBY per minute
and field that changed, however many events it sums, and one EXPIRE per minute hash. The
hashes (`ops:{ops}:<minute>`, one hash tag: the console reads hours of them in one pipeline)
live `ops.history_hours` and hold at most len(FIELDS) fields: bounded whatever the traffic.
A process that dies loses at most its last FLUSH_SECONDS of counts; Redis being down loses
the counts of that flush (logged), never a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.background import BackgroundTask
from services.store import keys
from services.store.redisclient import RedisClient, decoded

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0
# sent / provider_failed / number_refused / unknown: how a send ended (FailoverSender);
# refused: an SMS-code request refused by a limit or fraud segment; shed: answered 503 by
# admission control; delivered / undelivered: final receipts; cost: yuan in costs.UNITS.
FIELDS = (
    "sent",
    "provider_failed",
    "number_refused",
    "unknown",
    "refused",
    "shed",
    "delivered",
    "undelivered",
    "cost",
)


@dataclass(frozen=True)
class Minute:
    """The counts of one minute (Unix time // 60); missing fields are 0."""

    minute: int
    counts: dict[str, int]

    def __getitem__(self, field: str) -> int:
        return self.counts.get(field, 0)


class SendHistory:
    """Counts events per minute in memory and flushes them to Redis in the background."""

    def __init__(
        self, redis: RedisClient, hours: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self.hours = hours
        self._ttl = hours * 3600 + 120
        self._clock = clock
        self._pending: dict[tuple[int, str], int] = {}
        self._flusher = BackgroundTask()

    def add(self, field: str, amount: int = 1) -> None:
        """Count `amount` of `field` in the current minute (no I/O)."""
        if field not in FIELDS or amount <= 0:
            return
        slot = (int(self._clock() // 60), field)
        self._pending[slot] = self._pending.get(slot, 0) + amount

    async def flush(self) -> None:
        """Write what was counted since the last flush: one round trip, or nothing."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for (minute, field), amount in pending.items():
                    pipe.hincrby(keys.ops_minute_key(minute), field, amount)
                for minute in {minute for minute, _ in pending}:
                    pipe.expire(keys.ops_minute_key(minute), self._ttl)
                await pipe.execute()
        except Exception as exc:
            log.warning("console history: %d counts not written: %r", len(pending), exc)

    def start(self) -> None:
        self._flusher.start(self._run)

    async def close(self) -> None:
        await self._flusher.close()
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def minutes(self, count: int | None = None) -> list[Minute]:
        """The last `count` minutes (default: all kept), oldest first, the current one last."""
        count = count or self.hours * 60
        now = int(self._clock() // 60)
        wanted = list(range(now - count + 1, now + 1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for minute in wanted:
                pipe.hgetall(keys.ops_minute_key(minute))
            replies = await pipe.execute()
        return [
            Minute(minute, {decoded(k): int(v) for k, v in reply.items()})
            for minute, reply in zip(wanted, replies, strict=True)
        ]
