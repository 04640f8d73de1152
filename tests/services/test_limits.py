"""RateLimiter on real Redis, without HTTP: the same scenarios on standalone Redis and on a
real 3-master Redis Cluster, with the same answers."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

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
    """A factory of fresh clients (made inside the test's event loop) for one Redis mode."""
    if request.param == "standalone":
        redis_server_flush(redis_server.port)

        def connect():
            return aioredis.Redis(port=redis_server.port, decode_responses=True)

    else:
        cluster = request.getfixturevalue("local_cluster")
        cluster.flushall()

        def connect():
            nodes = [ClusterNode("127.0.0.1", port) for port in cluster.ports]
            return RedisCluster(startup_nodes=nodes, decode_responses=True)

    return connect


def redis_server_flush(port: int) -> None:
    import redis as sync_redis

    with sync_redis.Redis(port=port) as client:
        client.flushdb()


def limit(name: str, count: int, window: int = 60) -> Limit:
    # One hash tag for every key of one take(): a script runs on one Cluster node.
    return Limit(f"test:{{who}}:{name}", count, window, name, "过于频繁，请{seconds}秒后重试")


async def outcome(limiter: RateLimiter, *limits: Limit) -> tuple[str, int | None]:
    """("ok", None) or (the refusing limit's reason, retry_after), for comparing modes."""
    try:
        await limiter.take(*limits)
    except ServiceError as refusal:
        assert refusal.ret == Ret.REQERR
        return refusal.data["reason"], refusal.retry_after
    return "ok", None


@pytest.mark.gen_test(timeout=60)
async def test_take_until_full_then_refuse_with_the_time_left(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    minute = limit("minute", 3, window=60)
    answers = [await outcome(limiter, minute) for _ in range(5)]
    assert answers == [("ok", None)] * 3 + [("minute", 60)] * 2
    assert await redis.get(minute.key) == "3"  # refusals are not counted
    await redis.aclose()


@pytest.mark.gen_test(timeout=60)
async def test_a_refusal_counts_on_no_limit_and_names_the_first_full_one(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    roomy, tight = limit("roomy", 10), limit("tight", 1)
    assert await outcome(limiter, roomy, tight) == ("ok", None)
    assert await outcome(limiter, roomy, tight) == ("tight", 60)
    assert await redis.get(roomy.key) == "1", "the refused request took no place in 'roomy'"
    await redis.aclose()


@pytest.mark.gen_test(timeout=60)
async def test_refund_gives_a_place_back_and_never_creates_a_key(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    once = limit("once", 1)
    assert await outcome(limiter, once) == ("ok", None)
    assert await outcome(limiter, once) == ("once", 60)
    await limiter.refund(once)
    assert await outcome(limiter, once) == ("ok", None)
    never = limit("never", 1)
    await limiter.refund(never)
    assert not await redis.exists(never.key)  # no counter without an expiry is left behind
    await redis.aclose()


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_takes_never_overshoot(redis_mode):
    redis = redis_mode()
    limiter = RateLimiter(redis)
    five = limit("five", 5)
    answers = await asyncio.gather(*(outcome(limiter, five) for _ in range(50)))
    assert sorted(answers, key=str).count(("ok", None)) == 5
    assert await redis.get(five.key) == "5"
    ttl = await redis.ttl(five.key)
    assert 0 < ttl <= 60  # the window started with the first place taken
    await redis.aclose()
