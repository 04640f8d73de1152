"""CoalescedReads on real Redis (standalone and a 3-master Cluster): concurrent reads share a
round trip and each gets its own answer; a refused command fails only its read; a failed
round trip fails every read in it; a read whose caller gave up leaves the others alone."""

from __future__ import annotations

import asyncio

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from devstack.processes import free_port
from services.config import Config
from services.store.coalesced import CoalescedReads
from services.store.redisclient import redis_client

pytestmark = pytest.mark.gen_test(timeout=60)


@pytest.fixture
def redis(io_loop, redis_server, redis_mode):
    """The server's own client (redis_client) for each Redis mode, on an empty database."""
    if not redis_mode:
        with sync_redis.Redis(port=redis_server.port) as client:
            client.flushdb()
    roomy = {"url": redis_server.url, "connect_timeout": 10.0, "socket_timeout": 10.0}
    client = redis_client(Config().replace(redis=roomy).replace(**redis_mode))
    yield client
    io_loop.run_sync(client.aclose)


async def test_concurrent_reads_each_get_their_own_answer(redis):
    # Keys of many hash slots: on a Cluster the round trip splits over the three nodes.
    for i in range(40):
        await redis.set(f"coalesced:s:{i}", f"value {i}")
        await redis.hset(f"coalesced:h:{i}", mapping={"name": f"name {i}", "mobile": str(i)})
    reads = CoalescedReads(redis)
    answers = await asyncio.gather(
        *(reads.get(f"coalesced:s:{i}") for i in range(40)),
        *(reads.hmget(f"coalesced:h:{i}", ["name", "mobile", "absent"]) for i in range(40)),
        reads.get("coalesced:missing"),
        reads.hmget("coalesced:missing-hash", ["name"]),
    )
    assert answers[:40] == [f"value {i}" for i in range(40)]
    assert answers[40:80] == [[f"name {i}", str(i), None] for i in range(40)]
    assert answers[80:] == [None, [None]]
    assert await reads.get("coalesced:s:7") == "value 7"  # a lone read


async def test_a_refused_command_fails_its_own_read_only(redis):
    await redis.set("coalesced:string", "text")
    await redis.hset("coalesced:hash", "name", "n")
    reads = CoalescedReads(redis)
    answers = await asyncio.gather(
        reads.get("coalesced:string"),
        reads.get("coalesced:hash"),  # WRONGTYPE
        reads.hmget("coalesced:string", ["name"]),  # WRONGTYPE
        reads.hmget("coalesced:hash", ["name"]),
        return_exceptions=True,
    )
    assert answers[0] == "text" and answers[3] == ["n"]
    assert all(isinstance(answer, ResponseError) for answer in answers[1:3])


async def test_concurrent_reads_take_one_connection(redis_server):
    """One round trip for all of them: the pool opens a single connection (reads alone would
    take one each, all being in flight at once)."""
    name = f"coalesced-{free_port()}"
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True, client_name=name)
    try:
        await client.set("coalesced:one", "1")
        reads = CoalescedReads(client)
        answers = await asyncio.gather(*(reads.get("coalesced:one") for _ in range(50)))
        assert answers == ["1"] * 50
        with sync_redis.Redis(port=redis_server.port, decode_responses=True) as observer:
            assert len([c for c in observer.client_list() if c["name"] == name]) == 1
    finally:
        await client.aclose()


async def test_a_failed_round_trip_fails_every_read_in_it():
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    config = Config().replace(redis={"url": nothing_there, "connect_timeout": 2.0})
    client = redis_client(config)
    try:
        reads = CoalescedReads(client)
        answers = await asyncio.gather(
            reads.get("a"), reads.get("b"), reads.hmget("c", ["d"]), return_exceptions=True
        )
        assert all(isinstance(answer, RedisConnectionError) for answer in answers), answers
        with pytest.raises(RedisConnectionError):
            await reads.get("alone")
    finally:
        await client.aclose()


async def test_a_reader_that_gave_up_leaves_the_others_their_answers(redis):
    await redis.set("coalesced:kept", "yes")
    reads = CoalescedReads(redis)
    gives_up = reads.get("coalesced:kept")  # both asked now; their round trip goes on the
    waits = reads.get("coalesced:kept")  # next turn of the loop, after the first gave up
    gives_up.cancel()
    assert await waits == "yes"
    with pytest.raises(asyncio.CancelledError):
        await gives_up
    assert await reads.get("coalesced:kept") == "yes"
