"""Failures of Ronglian, Redis and MySQL: a clear errno in bounded time, no half-state, recovery."""

from __future__ import annotations

import asyncio
import time

import pytest

from devstack.processes import RedisServer, free_port
from services.store import keys
from tests.conftest import serving
from tests.polling import async_wait_until


async def assert_mobile_free(client, mobile: str) -> None:
    redis = client.app.services.redis
    assert not await redis.exists(keys.sms_guard_key(mobile), keys.sms_code_key(mobile))


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "status", "status_code": "160040"},
        {"mode": "status", "status_code": "111109"},
        {"mode": "http500"},
    ],
    ids=lambda fault: fault.get("status_code", fault["mode"]),
)
@pytest.mark.gen_test(timeout=30)
async def test_definite_non_send_is_thirderr_and_retry_succeeds_at_once(
    client, sandbox, fresh_mobile, fault
):
    """Ronglian refused (an error statusCode, an HTTP error): nothing went out, nothing counts."""
    mobile = fresh_mobile()
    sandbox.set_fault(times=1, **fault)
    text = await client.new_captcha("f-1")
    started = time.monotonic()
    body = await client.send_sms(mobile, text, "f-1")
    elapsed = time.monotonic() - started
    assert body == {"errno": "4301", "errmsg": "短信发送失败，请稍后重试"}
    assert elapsed < client.app.services.config.ronglian.request_timeout + 1.0
    await assert_mobile_free(client, mobile)
    assert sandbox.inbox(mobile) == []
    # The guard was released, so the user may retry at once with a new CAPTCHA.
    text = await client.new_captcha("f-2")
    assert (await client.send_sms(mobile, text, "f-2"))["errno"] == "0"
    assert len(sandbox.inbox(mobile)) == 1


@pytest.mark.parametrize("mode", ["hang", "close", "garbage"])
@pytest.mark.gen_test(timeout=30)
async def test_unknown_outcome_is_counted_not_refunded(client, sandbox, fresh_mobile, mode):
    """The request went out and no verdict came back: Ronglian may have delivered it.

    hang: a timeout after the request was written; close: the connection dropped before an
    answer; garbage: an answer that is not Ronglian's. The send is counted like a sent one:
    the resend guard stays (the page keeps counting down), the code stays valid (it may be on
    the phone), and the hourly/daily/IP/global counts keep it.
    """
    mobile = fresh_mobile()
    sandbox.set_fault(times=1, mode=mode)
    text = await client.new_captcha("u-1")
    started = time.monotonic()
    body = await client.send_sms(mobile, text, "u-1")
    assert time.monotonic() - started < client.app.services.config.ronglian.request_timeout + 1.0
    assert body["errno"] == "4301"
    assert body["data"] == {"reason": "send_unknown", "retry_after": 60}
    redis = client.app.services.redis
    assert await redis.exists(keys.sms_guard_key(mobile), keys.sms_code_key(mobile)) == 2
    assert await redis.get(keys.sms_mobile_hourly_key(mobile)) == "1"
    assert await redis.get(keys.sms_global_hourly_key()) == "1"
    assert await redis.get(keys.sms_ip_hourly_key("127.0.0.1")) == "1"
    text = await client.new_captcha("u-2")
    again = await client.send_sms(mobile, text, "u-2")
    assert again["errno"] == "4201" and again["data"]["reason"] == "resend_interval"


@pytest.mark.gen_test(timeout=30)
async def test_refused_connection_to_ronglian_is_thirderr(make_app, fresh_mobile):
    closed_port = free_port()  # nothing listens here: connections are refused
    app = await make_app(ronglian={"base_url": f"http://127.0.0.1:{closed_port}"})
    async with serving(app) as client:
        mobile = fresh_mobile()
        text = await client.new_captcha("f-3")
        body = await client.send_sms(mobile, text, "f-3")
        assert body == {"errno": "4301", "errmsg": "短信发送失败，请稍后重试"}
        await assert_mobile_free(client, mobile)  # a definite non-send: given back


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "own-redis").start()
    yield server
    server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_redis_down_is_dberr_quickly_and_recovers_without_restart(
    make_app, own_redis, fresh_mobile
):
    app = await make_app(redis={"url": own_redis.url})
    async with serving(app) as client:
        assert await client.new_captcha("r-1")
        own_redis.stop()
        sms_path = f"/api/v1.0/sms_codes/{fresh_mobile()}?image_code=ABCD&image_code_id=r-1"
        for path in ("/api/v1.0/image_codes/r-2", sms_path):
            started = time.monotonic()
            body = await client.json(path)
            assert body["errno"] == "4001"
            assert time.monotonic() - started < 3.0
        own_redis.start()  # same port, empty data
        mobile = fresh_mobile()
        text = await client.new_captcha("r-3")
        assert (await client.send_sms(mobile, text, "r-3"))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_mysql_down_is_dberr_and_recovers_without_restart(
    client, mariadb_server, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    text = await client.new_captcha("m-1")
    # A ready set of registered numbers answers a register send without MySQL; unknown (its
    # marker dropped, as after a flush) the send asks MySQL, which is what fails here.
    redis = client.app.services.redis
    await async_wait_until(lambda: redis.exists(keys.registered_ready_key()), what="the set")
    await redis.delete(keys.registered_ready_key())
    mariadb_server.stop()
    try:
        started = time.monotonic()
        body = await client.send_sms(mobile, text, "m-1")
        assert body["errno"] == "4001"
        assert time.monotonic() - started < 5.0
        await assert_mobile_free(client, mobile)
        assert sandbox.inbox(mobile) == []
    finally:
        mariadb_server.start()
    text = await client.new_captcha("m-2")
    assert (await client.send_sms(mobile, text, "m-2"))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_burst_larger_than_redis_pool_waits_instead_of_failing(
    make_app, sandbox, fresh_mobile
):
    # The soak benchmark found DBERR when more requests were in flight than pooled connections.
    app = await make_app(redis={"max_connections": 4}, limits={"sms_per_ip_hour": 100})
    async with serving(app) as client:
        mobiles = [fresh_mobile() for _ in range(30)]
        texts = [await client.new_captcha(f"burst-{i}") for i in range(30)]
        answers = await asyncio.gather(
            *(
                client.send_sms(m, t, f"burst-{i}")
                for i, (m, t) in enumerate(zip(mobiles, texts, strict=True))
            )
        )
    assert [a["errno"] for a in answers] == ["0"] * 30
    assert len(sandbox.inbox()) == 30
