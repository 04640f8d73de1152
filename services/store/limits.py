"""Fixed-window rate limits kept in Redis, so they hold across processes and hosts.

A limit is taken (counted) atomically with the check, before any work is done, and can be
refunded when the work did not happen (an SMS that was not sent is not counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from services.errors import Ret, ServiceError
from services.store import redis_scripts
from services.store.redis_scripts import ScriptCall
from services.store.redisclient import RedisClient


@dataclass(frozen=True)
class Limit:
    """At most `limit` units per `window` seconds on `key`, each event costing `cost` units;
    `reason` names it to clients."""

    key: str
    limit: int
    window: int
    reason: str
    message: str  # with {seconds}
    cost: int = 1

    def refusal(self, ms_left: int) -> ServiceError:
        seconds = max(1, math.ceil(ms_left / 1000))
        return ServiceError(
            Ret.REQERR,
            self.message.format(seconds=seconds),
            data={"reason": self.reason},
            retry_after=seconds,
        )


class RateLimiter:
    """Takes and refunds fixed-window limits (services/store/lua/limits_take.lua)."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._take = redis_scripts.register(redis, "limits_take")
        self._refund = redis_scripts.register(redis, "limits_refund")

    async def take(self, *limits: Limit) -> None:
        """Count one event (its cost) on every limit, or raise REQERR naming the first one
        that has no room for it.

        All keys must share a hash slot (Redis Cluster runs a script on one node).
        """
        refusal = self.refusal(await self.take_call(*limits).run(), *limits)
        if refusal is not None:
            raise refusal

    def take_call(self, *limits: Limit) -> ScriptCall:
        """take() as a script call, to run together with others (redis_scripts.run_together);
        refusal() reads its reply."""
        args: list[int] = []
        for limit in limits:
            args += [limit.limit, limit.window, limit.cost]
        return ScriptCall(self._take, [limit.key for limit in limits], args)

    @staticmethod
    def refusal(reply: object, *limits: Limit) -> ServiceError | None:
        """The refusal a take_call() reply stands for, or None if the event was counted."""
        index, ms_left = cast("list[int]", reply)
        return limits[int(index) - 1].refusal(int(ms_left)) if index else None

    async def take_each(self, *limits: Limit) -> list[ServiceError | None]:
        """Count one event on each limit on its own (any slots), all in one round trip; the
        refusal of each (None: counted). The caller gives back what was counted if it does
        not go on (refund_each)."""
        calls = [self.take_call(limit) for limit in limits]
        replies = await redis_scripts.run_together(self._redis, calls)
        failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if failed is not None:
            counted = [
                limit
                for limit, reply in zip(limits, replies, strict=True)
                if not isinstance(reply, Exception) and self.refusal(reply, limit) is None
            ]
            await self.refund_each(*counted)
            raise failed
        return [self.refusal(reply, limit) for limit, reply in zip(limits, replies, strict=True)]

    async def refund_each(self, *limits: Limit) -> bool:
        """Undo take_each() for the limits given, in one round trip, best effort (True if all
        of it ran; a count left behind only expires with its window)."""
        if not limits:
            return True
        calls = [self.refund_call(limit) for limit in limits]
        return await redis_scripts.give_back_together(self._redis, calls)

    async def refund(self, *limits: Limit) -> None:
        """Undo take() for an event that did not happen."""
        await self.refund_call(*limits).run()

    def refund_call(self, *limits: Limit) -> ScriptCall:
        return ScriptCall(
            self._refund, [limit.key for limit in limits], [limit.cost for limit in limits]
        )
