"""Fixed-window rate limits kept in Redis, so they hold across processes and hosts.

A limit is taken (counted) atomically with the check, before any work is done, and can be
refunded when the work did not happen (an SMS that was not sent is not counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.errors import Ret, ServiceError
from services.redisclient import RedisClient

# KEYS: counters in one hash slot; ARGV: limit, window (s) and cost per key. Check every
# counter first and only then count on all of them, so a refusal changes nothing. An event
# costing more than what is left is refused (it does not use up the rest).
# Returns {0, 0} when taken, else {index of the refusing key (1-based), ms until it resets}.
TAKE_SCRIPT = """
for i, key in ipairs(KEYS) do
    local used = tonumber(redis.call('GET', key) or '0')
    if used + tonumber(ARGV[3 * i]) > tonumber(ARGV[3 * i - 2]) then
        local ms_left = redis.call('PTTL', key)
        if ms_left < 0 then ms_left = tonumber(ARGV[3 * i - 1]) * 1000 end
        return {i, ms_left}
    end
end
for i, key in ipairs(KEYS) do
    local cost = tonumber(ARGV[3 * i])
    if redis.call('INCRBY', key, cost) == cost then redis.call('EXPIRE', key, ARGV[3 * i - 1]) end
end
return {0, 0}
"""

# Give back each counter's cost (ARGV) if it still exists (never creates a key without expiry).
REFUND_SCRIPT = """
for i, key in ipairs(KEYS) do
    if redis.call('EXISTS', key) == 1 then redis.call('DECRBY', key, ARGV[i]) end
end
return 0
"""


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
    """Takes and refunds fixed-window limits."""

    def __init__(self, redis: RedisClient) -> None:
        self._take = redis.register_script(TAKE_SCRIPT)
        self._refund = redis.register_script(REFUND_SCRIPT)

    async def take(self, *limits: Limit) -> None:
        """Count one event (its cost) on every limit, or raise REQERR naming the first one
        that has no room for it.

        All keys must share a hash slot (Redis Cluster runs a script on one node).
        """
        args: list[int] = []
        for limit in limits:
            args += [limit.limit, limit.window, limit.cost]
        index, ms_left = await self._take(keys=[limit.key for limit in limits], args=args)
        if index:
            raise limits[index - 1].refusal(ms_left)

    async def refund(self, *limits: Limit) -> None:
        """Undo take() for an event that did not happen."""
        await self._refund(
            keys=[limit.key for limit in limits], args=[limit.cost for limit in limits]
        )
