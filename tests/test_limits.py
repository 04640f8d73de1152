"""Abuse limits: per mobile, per client IP, the global budget, and CAPTCHAs per IP."""

from __future__ import annotations

import json
import logging

import pytest

from services.clientip import REMEMBERED_HEADERS_LENGTH, parse_networks, resolve_client_ip
from services.store import keys
from tests.conftest import serving
from tests.flows import assert_nothing_stored, assert_refusal, pass_resend_interval, send

# The tests taking mode_client or make_mode_app run on standalone Redis and on a Redis Cluster.


@pytest.mark.gen_test(timeout=60)
async def test_mobile_gets_at_most_five_sms_per_hour(mode_client, sandbox, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    sandbox.set_fault(mode="ok")
    for i in range(5):
        await pass_resend_interval(client.app.services.redis, mobile)
        _, body = await send(client, mobile, f"h-{i}")
        assert body["errno"] == "0", body
        sandbox.clear()  # the sandbox's own 30 s rule is not what this test is about
    await pass_resend_interval(client.app.services.redis, mobile)
    redis = client.app.services.redis
    last_code = await redis.hgetall(keys.sms_code_key(mobile))
    response, body = await send(client, mobile, "h-5")
    assert_refusal(response, body, "mobile_hourly", 3500, 3600)
    assert await redis.hgetall(keys.sms_code_key(mobile)) == last_code  # still the 5th code
    assert not await redis.exists(keys.sms_guard_key(mobile))
    assert await redis.get(keys.sms_mobile_hourly_key(mobile)) == "5"
    assert sandbox.inbox(mobile) == []


@pytest.mark.gen_test(timeout=60)
async def test_mobile_gets_at_most_ten_sms_per_day(make_app, sandbox, fresh_mobile):
    app = await make_app(limits={"sms_per_mobile_hour": 100})
    async with serving(app) as client:
        mobile = fresh_mobile()
        for i in range(10):
            await pass_resend_interval(client.app.services.redis, mobile)
            assert (await send(client, mobile, f"d-{i}"))[1]["errno"] == "0"
            sandbox.clear()
        await pass_resend_interval(client.app.services.redis, mobile)
        response, body = await send(client, mobile, "d-10")
        assert_refusal(response, body, "mobile_daily", 86000, 86400)


@pytest.mark.gen_test(timeout=60)
async def test_client_ip_gets_at_most_twenty_sms_per_hour(mode_client, sandbox, fresh_mobile):
    """20 SMS from one IP pass, the 21st is refused with nothing stored."""
    client = mode_client
    for i in range(20):
        assert (await send(client, fresh_mobile(), f"ip-{i}"))[1]["errno"] == "0"
    mobile = fresh_mobile()
    response, body = await send(client, mobile, "ip-20")
    assert_refusal(response, body, "ip_hourly", 3500, 3600)
    await assert_nothing_stored(client, mobile)
    assert len(sandbox.inbox()) == 20


@pytest.mark.gen_test(timeout=60)
async def test_ip_limit_follows_forwarded_for_only_from_trusted_proxy(
    make_app, sandbox, fresh_mobile
):
    app = await make_app(limits={"sms_per_ip_hour": 2}, security={"trusted_proxies": "127.0.0.0/8"})
    async with serving(app) as client:
        alice = {"X-Forwarded-For": "203.0.113.5"}
        bob = {"X-Real-IP": "198.51.100.9"}
        for i in range(2):
            assert (await send(client, fresh_mobile(), f"a-{i}", alice))[1]["errno"] == "0"
        assert (await send(client, fresh_mobile(), "a-2", alice))[1]["data"][
            "reason"
        ] == "ip_hourly"
        assert (await send(client, fresh_mobile(), "b-0", bob))[1]["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_global_budget_stops_sending_for_everyone_and_logs_error(
    make_mode_app, sandbox, fresh_mobile, caplog
):
    app = await make_mode_app(limits={"sms_global_per_hour": 3})
    async with serving(app) as client:
        for i in range(3):
            assert (await send(client, fresh_mobile(), f"g-{i}"))[1]["errno"] == "0"
        mobile = fresh_mobile()
        with caplog.at_level(logging.ERROR, logger="services.codes.sms"):
            response, body = await send(client, mobile, "g-3")
            await send(client, fresh_mobile(), "g-4")
        assert_refusal(response, body, "global_hourly", 3500, 3600)
        assert body["errmsg"].startswith("短信服务繁忙")
        alarms = [r for r in caplog.records if "global SMS budget" in r.getMessage()]
        assert len(alarms) == 1 and alarms[0].levelno == logging.ERROR
        await assert_nothing_stored(client, mobile)
        assert await client.app.services.redis.get(keys.sms_global_hourly_key()) == "3"
        assert len(sandbox.inbox()) == 3


@pytest.mark.gen_test(timeout=60)
async def test_refused_send_is_not_counted(make_app, sandbox, fresh_mobile):
    app = await make_app(limits={"sms_global_per_hour": 1})
    async with serving(app) as client:
        sandbox.set_fault(mode="status", status_code="160040", times=1)
        assert (await send(client, fresh_mobile(), "n-0"))[1]["errno"] == "4301"
        # The failed send gave its place in the budget back.
        assert (await send(client, fresh_mobile(), "n-1"))[1]["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_captcha_images_limited_per_ip_per_minute(client):
    for i in range(60):
        response = await client.fetch(f"/api/v1.0/image_codes/cap-{i}")
        assert response.code == 200
    response = await client.fetch("/api/v1.0/image_codes/cap-60")
    body = json.loads(response.body)
    assert_refusal(response, body, "captcha_ip_minute", 50, 60)
    assert not await client.app.services.redis.exists(keys.captcha_key("cap-60"))
    audio = await client.json("/api/v1.0/image_codes/cap-1/audio")
    assert audio["data"]["reason"] == "captcha_ip_minute"


# --- client IP resolution ----------------------------------------------------------------

TRUSTED = parse_networks("10.0.0.0/8, 192.168.1.1")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "real_ip", "expected"),
    [
        ("203.0.113.1", "1.2.3.4", "5.6.7.8", "203.0.113.1"),  # untrusted peer: headers ignored
        ("10.1.1.1", "1.2.3.4", None, "1.2.3.4"),
        ("10.1.1.1", "6.6.6.6, 1.2.3.4, 10.2.2.2", None, "1.2.3.4"),  # rightmost untrusted hop
        ("10.1.1.1", "not-an-ip", "5.6.7.8", "5.6.7.8"),
        ("10.1.1.1", None, None, "10.1.1.1"),
        ("192.168.1.1", "2001:db8::1", None, "2001:db8::1"),
    ],
)
def test_resolve_client_ip(peer, forwarded_for, real_ip, expected):
    assert resolve_client_ip(peer, forwarded_for, real_ip, TRUSTED) == expected


def test_malformed_trusted_proxies_is_a_config_error():
    from services.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_config(None, environ={"SMSREG_SECURITY_TRUSTED_PROXIES": "10.0.0.0/33"})


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards():
    assert resolve_client_ip("203.0.113.1", "1.2.3.4", "5.6.7.8", ()) == "203.0.113.1"
    assert resolve_client_ip("not-an-ip", None, None, ()) == "not-an-ip"


def test_long_and_short_forwarding_headers_resolve_alike_every_time():
    """resolve_client_ip remembers its answers for headers of ordinary length only (a pure
    function of its arguments); a long header is resolved anew each time, the same way."""
    hops = ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(60))  # trusted proxies
    long = f"6.6.6.6, 1.2.3.4, {hops}"
    assert len(long) > REMEMBERED_HEADERS_LENGTH
    for forwarded_for in (long, "6.6.6.6, 1.2.3.4, 10.0.0.1, 10.0.0.2"):
        for _ in range(2):
            assert resolve_client_ip("10.1.1.1", forwarded_for, None, TRUSTED) == "1.2.3.4"
