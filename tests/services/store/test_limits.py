"""RateLimiter on real Redis, without HTTP: the same scenarios on standalone Redis and on a
real 3-master Redis Cluster, with the same answers."""

from __future__ import annotations

import asyncio

import pytest
import redis as sync_redis

from services.config import Config
from services.errors import Ret, ServiceError
from services.store.limits import Limit, RateLimiter
from services.store.redisclient import redis_client


@pytest.fixture
def redis(io_loop, redis_server, redis_mode):
    """A client for each Redis mode (see tests/conftest.py redis_mode), built by the server's
    own redis_client(), with its pool, timeouts and retry policy, on an empty database."""
    if not redis_mode:
        with sync_redis.Redis(port=redis_server.port) as client:
            client.flushdb()
    # Generous timeouts: a burst opens dozens of connections at once, which on a busy machine
    # takes longer than the shipped 1 s connect timeout; what is tested here is the counting.
    roomy = {"url": redis_server.url, "connect_timeout": 10.0, "socket_timeout": 10.0}
    config = Config().replace(redis=roomy).replace(**redis_mode)
    client = redis_client(config)
    yield client
    io_loop.run_sync(client.aclose)


@pytest.fixture
def limiter(redis) -> RateLimiter:
    return RateLimiter(redis)


def limit(name: str, count: int, window: int = 60) -> Limit:
    # One hash tag for every key of one take(): a script runs on one Cluster node.
    return Limit(f"test:{{who}}:{name}", count, window, name, "过于频繁，请{seconds}秒后重试")


async def outcome(limiter: RateLimiter, *limits: Limit) -> str:
    """The answer to one take(): "ok" or the refusing limit's reason (the same in both modes).

    A refusal's retry_after must be the time left in its window: between 1 s and the window
    (a full window right after it began; less, however slow the machine, never more).
    """
    try:
        await limiter.take(*limits)
    except ServiceError as refusal:
        assert refusal.ret == Ret.REQERR
        [refusing] = [limit for limit in limits if limit.reason == refusal.data["reason"]]
        assert refusal.retry_after is not None and 0 < refusal.retry_after <= refusing.window
        return refusing.reason
    return "ok"


@pytest.mark.gen_test(timeout=60)
async def test_take_until_full_then_refuse_with_the_time_left(redis, limiter):
    minute = limit("minute", 3, window=60)
    answers = [await outcome(limiter, minute) for _ in range(5)]
    assert answers == ["ok"] * 3 + ["minute"] * 2
    assert await redis.get(minute.key) == "3"  # refusals are not counted


@pytest.mark.gen_test(timeout=60)
async def test_a_refusal_counts_on_no_limit_and_names_the_first_full_one(redis, limiter):
    roomy, tight = limit("roomy", 10), limit("tight", 1)
    assert await outcome(limiter, roomy, tight) == "ok"
    assert await outcome(limiter, roomy, tight) == "tight"
    assert await redis.get(roomy.key) == "1", "the refused request took no place in 'roomy'"


@pytest.mark.gen_test(timeout=60)
async def test_refund_gives_a_place_back_and_never_creates_a_key(redis, limiter):
    once = limit("once", 1)
    assert await outcome(limiter, once) == "ok"
    assert await outcome(limiter, once) == "once"
    await limiter.refund(once)
    assert await outcome(limiter, once) == "ok"
    never = limit("never", 1)
    await limiter.refund(never)
    assert not await redis.exists(never.key)  # no counter without an expiry is left behind


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_takes_never_overshoot(redis, limiter):
    five = limit("five", 5)
    # One take first, as a running server's client has connected long before a burst.
    assert await outcome(limiter, five) == "ok"
    answers = await asyncio.gather(*(outcome(limiter, five) for _ in range(49)))
    assert answers.count("ok") == 4 and answers.count("five") == 45
    assert await redis.get(five.key) == "5"
    ttl = await redis.ttl(five.key)
    assert 0 < ttl <= 60  # the window started with the first place taken
