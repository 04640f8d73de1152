"""RateLimiter on real Redis, without HTTP: the same scenarios on standalone Redis and on a
real 3-master Redis Cluster, with the same answers."""

from __future__ import annotations

import asyncio

import pytest

from server import redis_client
from services.config import Config
from services.errors import Ret, ServiceError
from services.limits import Limit, RateLimiter
from tests.cluster_helpers import LocalRedisCluster


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory):
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("limits-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["standalone", "cluster"])
def redis_mode(request, redis_server):
    """A factory of fresh clients (made inside the test's event loop) for one Redis mode,
    built by the server's own redis_client(), with its pool, timeouts and retry policy."""
    if request.param == "standalone":
        redis_server_flush(redis_server.port)
        config = Config().replace(redis={"url": redis_server.url})
    else:
        cluster = request.getfixturevalue("local_cluster")
        cluster.flushall()
        config = Config().replace(redis={"mode": "cluster", "cluster_nodes": cluster.startup_nodes})
    return lambda: redis_client(config)


def redis_server_flush(port: int) -> None:
    import redis as sync_redis

    with sync_redis.Redis(port=port) as client:
        client.flushdb()


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
async def test_take_until_full_then_refuse_with_the_time_left(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    minute = limit("minute", 3, window=60)
    answers = [await outcome(limiter, minute) for _ in range(5)]
    assert answers == ["ok"] * 3 + ["minute"] * 2
    assert await redis.get(minute.key) == "3"  # refusals are not counted
    await redis.aclose()


@pytest.mark.gen_test(timeout=60)
async def test_a_refusal_counts_on_no_limit_and_names_the_first_full_one(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    roomy, tight = limit("roomy", 10), limit("tight", 1)
    assert await outcome(limiter, roomy, tight) == "ok"
    assert await outcome(limiter, roomy, tight) == "tight"
    assert await redis.get(roomy.key) == "1", "the refused request took no place in 'roomy'"
    await redis.aclose()


@pytest.mark.gen_test(timeout=60)
async def test_refund_gives_a_place_back_and_never_creates_a_key(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    once = limit("once", 1)
    assert await outcome(limiter, once) == "ok"
    assert await outcome(limiter, once) == "once"
    await limiter.refund(once)
    assert await outcome(limiter, once) == "ok"
    never = limit("never", 1)
    await limiter.refund(never)
    assert not await redis.exists(never.key)  # no counter without an expiry is left behind
    await redis.aclose()


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_takes_never_overshoot(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    five = limit("five", 5)
    # One take first, as a running server's client has connected long before a burst.
    assert await outcome(limiter, five) == "ok"
    answers = await asyncio.gather(*(outcome(limiter, five) for _ in range(49)))
    assert answers.count("ok") == 4 and answers.count("five") == 45
    assert await redis.get(five.key) == "5"
    ttl = await redis.ttl(five.key)
    assert 0 < ttl <= 60  # the window started with the first place taken
    await redis.aclose()
