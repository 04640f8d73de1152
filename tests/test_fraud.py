"""SMS pumping: per-segment conversion tracking, breakers, proof of work and budget shedding.

Each attack is written as the bot would run it: it solves every CAPTCHA (it reads the answer
from Redis), never verifies a code, and speaks for many addresses through a trusted proxy's
X-Forwarded-For. On the code before services/codes/fraud.py every one of these sends went out.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sys
import urllib.parse

import pytest

from services.captcha.pow import solve
from services.codes.fraud import segments_of
from services.store import keys
from tests.conftest import ROOT, serving
from tests.flows import FRAUD_FOR_TESTS, register

FRAUD = FRAUD_FOR_TESTS  # a breaker trips in a handful of requests (tests/flows.py)
PROXY = {"trusted_proxies": "127.0.0.0/8"}

_numbers = itertools.count(1)


def mobile_in(block: str) -> str:
    """A new mobile in number block `block` (7 digits), unique in this test session."""
    return f"{block}{next(_numbers) % 10_000:04d}"


# The tests fetch every CAPTCHA from 127.0.0.1: lift that per-IP limit.
LIFTED_CAPTCHA_LIMIT = {"captcha_per_ip_minute": 1000}


async def fraud_app(make_app, **fraud):
    return await make_app(fraud={**FRAUD, **fraud}, security=PROXY, limits=LIFTED_CAPTCHA_LIMIT)


async def send(client, mobile: str, ip: str, altcha: str | None = None, captcha=None):
    """One SMS request from `ip` with a solved CAPTCHA; returns (response, body, captcha)."""
    if captcha is None:
        captcha_id = f"c{next(_numbers)}"
        captcha = (captcha_id, await client.new_captcha(captcha_id))
    query = {"image_code": captcha[1], "image_code_id": captcha[0]}
    if altcha is not None:
        query["altcha"] = altcha
    response = await client.fetch(
        f"/api/v1.0/sms_codes/{mobile}?{urllib.parse.urlencode(query)}",
        headers={"X-Forwarded-For": ip},
    )
    return response, json.loads(response.body), captcha


async def send_ok(client, mobile: str, ip: str, altcha: str | None = None) -> None:
    _, body, _ = await send(client, mobile, ip, altcha)
    assert body["errno"] == "0", body


def assert_refused(response, body, reason: str) -> None:
    assert response.code == 200
    assert body["errno"] == "4201", body
    assert body["data"]["reason"] == reason
    assert response.headers["Retry-After"] == str(body["data"]["retry_after"])


# --- segments ----------------------------------------------------------------------------


def test_segments_are_address_network_and_number_block():
    assert [s.name for s in segments_of("13812345678", "203.0.113.77")] == [
        "ip:203.0.113.77",
        "net:203.0.113.0/24",
        "blk:1381234",
    ]
    assert [s.name for s in segments_of("13812345678", "2001:db8:1:2:3::9")] == [
        "ip:2001:db8:1:2::/64",
        "net:2001:db8:1::/48",
        "blk:1381234",
    ]
    # As the handlers pass an IPv6 client: its /64 (security.ipv6_prefix).
    assert [s.name for s in segments_of("13812345678", "2001:db8:1:2::/64")] == [
        "ip:2001:db8:1:2::/64",
        "net:2001:db8:1::/48",
        "blk:1381234",
    ]
    # An IPv4 client seen through an IPv6 socket is still its /24.
    assert segments_of("13812345678", "::ffff:203.0.113.77")[1].name == "net:203.0.113.0/24"
    # A code to a registered number (login, reset): who sends only.
    assert [s.name for s in segments_of("13812345678", "203.0.113.77", with_block=False)] == [
        "ip:203.0.113.77",
        "net:203.0.113.0/24",
    ]


# --- the breaker -------------------------------------------------------------------------


# Tests taking make_mode_app run on standalone Redis and on a Redis Cluster (the three
# segments of a send in the one {fraud} slot, taken by one script).


@pytest.mark.gen_test(timeout=60)
async def test_unconverted_segment_needs_proof_of_work_then_is_blocked(
    make_mode_app, sandbox, caplog
):
    app = await fraud_app(make_mode_app)
    async with serving(app) as client:
        await trip_the_breaker(client, sandbox, caplog)


def fresh_mobile() -> str:
    """A mobile in a number block of its own (so only the sender's segments are judged)."""
    return mobile_in(f"139{next(_numbers) % 10_000:04d}")


async def trip_the_breaker(client, sandbox, caplog) -> None:
    """An address that never verifies: normal -> elevated (proof of work) -> blocked. Its
    network only asks for proof of work; nothing wider than the address is blocked."""
    bot = "198.51.100.9"
    for _ in range(5):
        await send_ok(client, fresh_mobile(), bot)
    with caplog.at_level(logging.WARNING, logger="services.codes.fraud"):
        mobile = fresh_mobile()
        response, body, captcha = await send(client, mobile, bot)
    assert_refused(response, body, "pow_required")
    assert body["data"]["retry_after"] == 0
    challenge = body["data"]["challenge"]
    assert challenge["parameters"]["algorithm"] == "PBKDF2/SHA-256" and challenge["signature"]
    assert challenge["parameters"]["data"] == {"level": 2}  # the address's 1 + the network's 1
    # Nothing was sent or used up: the same CAPTCHA passes with the solved proof of work.
    assert sandbox.inbox(mobile) == []
    assert await client.app.services.redis.exists(keys.captcha_key(captcha[0]))
    changes = [r.getMessage() for r in caplog.records]
    assert sum("ip:198.51.100.9 is now elevated" in m for m in changes) == 1, changes
    assert sum("net:198.51.100.0/24 is now elevated" in m for m in changes) == 1
    _, body, _ = await send(client, mobile, bot, solve(challenge), captcha)
    assert body["errno"] == "0", body

    # Elevated: two more sends with proof of work, then the round is used up and, with no
    # conversion, the address is blocked for the cool-down.
    for _ in range(2):
        other = fresh_mobile()
        _, body, _ = await send(client, other, bot)
        _, body, _ = await send(client, other, bot, solve(body["data"]["challenge"]))
        assert body["errno"] == "0", body
    with caplog.at_level(logging.WARNING, logger="services.codes.fraud"):
        response, body, _ = await send(client, fresh_mobile(), bot)
        assert_refused(response, body, "segment_blocked")
        assert 590 <= body["data"]["retry_after"] <= 600
        # A blocked address stays blocked whatever the bot brings.
        response, body, _ = await send(client, fresh_mobile(), bot, "garbage")
        assert_refused(response, body, "segment_blocked")
    blocked = [r for r in caplog.records if "is now blocked" in r.getMessage()]
    assert [r.getMessage().split()[2] for r in blocked] == ["ip:198.51.100.9"]
    assert all(r.levelno == logging.WARNING for r in blocked)
    assert len(sandbox.inbox()) == 8  # 5 + 3 with proof of work, and nothing after

    # A neighbour on the same network pays the network's proof of work and is served.
    neighbour = fresh_mobile()
    _, body, _ = await send(client, neighbour, "198.51.100.10")
    assert body["data"]["reason"] == "pow_required", body
    await send_ok(client, neighbour, "198.51.100.10", solve(body["data"]["challenge"]))
    metrics = (await client.fetch("/metrics")).body.decode()
    assert 'smsreg_fraud_segment_state_total{kind="ip",state="blocked"} 1.0' in metrics
    assert 'smsreg_fraud_segment_state_total{kind="net",state="blocked"}' not in metrics


@pytest.mark.gen_test(timeout=60)
async def test_segment_that_converts_stays_normal(make_mode_app, sandbox):
    app = await fraud_app(make_mode_app)
    async with serving(app) as client:
        # Ten real users behind one NAT, each registering with the code it got.
        for _ in range(10):
            mobile = mobile_in("1391111")
            _, body, _ = await send(client, mobile, "192.0.2.1")
            assert body["errno"] == "0", body
            code = sandbox.inbox(mobile)[-1]["datas"][0]
            assert (await register(client, mobile, code))["errno"] == "0"
        status = await client.app.services.fraud.segment_status("net:192.0.2.0/24")
        assert (status.state, status.sends, status.conversions) == ("normal", 10, 10)


@pytest.mark.gen_test(timeout=60)
async def test_conversions_bring_an_elevated_segment_back(make_app, sandbox):
    app = await fraud_app(make_app, elevated_sends=10)
    async with serving(app) as client:
        for _ in range(5):
            await send_ok(client, mobile_in("1700002"), "198.51.100.1")
        # Elevated now; users who do verify bring the conversion rate back above 20 %.
        for _ in range(2):
            mobile = mobile_in("1700002")
            _, body, _ = await send(client, mobile, "198.51.100.1")
            await send_ok(client, mobile, "198.51.100.1", solve(body["data"]["challenge"]))
            code = sandbox.inbox(mobile)[-1]["datas"][0]
            assert (await register(client, mobile, code))["errno"] == "0"
        await send_ok(client, mobile_in("1700002"), "198.51.100.1")  # no proof needed
        assert (await client.app.services.fraud.segment_status("blk:1700002")).state == "normal"


@pytest.mark.gen_test(timeout=60)
async def test_proof_of_work_is_single_use_and_must_be_ours(make_app, sandbox):
    app = await fraud_app(make_app, elevated_sends=10)
    async with serving(app) as client:
        for _ in range(5):
            await send_ok(client, mobile_in("1700003"), "198.51.100.1")
        _, body, _ = await send(client, mobile_in("1700003"), "198.51.100.1")
        payload = solve(body["data"]["challenge"])
        await send_ok(client, mobile_in("1700003"), "198.51.100.1", payload)
        # Replayed: asked again, with a new challenge.
        response, body, _ = await send(client, mobile_in("1700003"), "198.51.100.1", payload)
        assert_refused(response, body, "pow_required")
        # A challenge the client made up (signed with another key) is not accepted.
        from services.captcha.pow import ProofOfWork

        forged = ProofOfWork(None, app.services.config.fraud, "another-key").challenge()
        response, body, _ = await send(client, mobile_in("1700003"), "198.51.100.1", solve(forged))
        assert_refused(response, body, "pow_required")
        for junk in ("", "not base64!", "e30=", "x" * 5000):
            response, body, _ = await send(client, mobile_in("1700003"), "198.51.100.1", junk)
            assert_refused(response, body, "pow_required")
        # Outside the elevated segments a stray altcha value changes nothing.
        await send_ok(client, mobile_in("1395555"), "203.0.113.9", "not base64!")


# --- the budget --------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_budget_sheds_poor_senders_then_newcomers_keeps_earned_credit(
    make_app, sandbox, caplog
):
    app = await make_app(
        fraud={**FRAUD, "budget_share_newcomer": 0.8, "budget_share_poor": 0.5, "min_sends": 3},
        limits={"sms_global_per_hour": 10},
        security=PROXY,
    )
    async with serving(app) as client:
        # Credit: an address whose three users verified their codes (one good send each).
        users = [mobile_in("1392222") for _ in range(3)]
        for mobile in users:
            await send_ok(client, mobile, "192.0.2.1")
        for mobile in users:
            code = sandbox.inbox(mobile)[-1]["datas"][0]
            assert (await register(client, mobile, code))["errno"] == "0"
        # A bot's network: three unconverted sends and it is elevated, a poor record.
        for i in range(3):
            await send_ok(client, mobile_in(f"170000{i}"), f"198.51.100.{i + 1}")
        # 6 of 10 spent: a poor sender may use half of the budget, so it is shed first.
        _, body, _ = await send(client, mobile_in("1700004"), "198.51.100.50")
        payload = solve(body["data"]["challenge"])
        response, body, _ = await send(client, mobile_in("1700004"), "198.51.100.50", payload)
        assert_refused(response, body, "budget_shed")
        # Unknown newcomers may use 80 %: two more ...
        for i in range(2):
            await send_ok(client, mobile_in(f"139333{i}"), f"2001:db8:{i + 1}::1")
        with caplog.at_level(logging.ERROR, logger="services.codes.fraud"):
            response, body, _ = await send(client, mobile_in("1393339"), "2001:db8:ff::1")
        assert_refused(response, body, "budget_shed")  # ... and then they are shed.
        # The address with credit is still served, to the last SMS of the budget.
        for _ in range(2):
            await send_ok(client, mobile_in("1396666"), "192.0.2.1")
        response, body, _ = await send(client, mobile_in("1396666"), "192.0.2.1")
        assert_refused(response, body, "global_hourly")
        assert len(sandbox.inbox()) == 10
        alerts = [r for r in caplog.records if "SMS budget alert" in r.getMessage()]
        assert alerts and alerts[0].levelno == logging.ERROR
        metrics = (await client.fetch("/metrics")).body.decode()
        assert "smsreg_fraud_budget_alerts_total 3.0" in metrics  # sends 8, 9 and 10


# --- races -------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=120)
async def test_hundred_concurrent_requests_do_not_overshoot_an_elevated_cap(make_mode_app, sandbox):
    """100 concurrent requests with valid proofs of work from one elevated address: exactly
    its probation round (elevated_sends) goes out."""
    app = await fraud_app(make_mode_app, elevated_sends=3)
    async with serving(app) as client:
        for _ in range(5):
            await send_ok(client, fresh_mobile(), "198.51.100.1")
        pow_service = client.app.services.fraud._pow
        # The highest level: enough whatever the network's level has risen to meanwhile.
        payloads = [solve(pow_service.challenge(10)) for _ in range(100)]
        captchas = []
        for _ in range(100):
            captcha_id = f"race{next(_numbers)}"
            captchas.append((captcha_id, await client.new_captcha(captcha_id)))
        answers = await asyncio.gather(
            *(
                send(client, fresh_mobile(), "198.51.100.1", payloads[i], captchas[i])
                for i in range(100)
            )
        )
        bodies = [body for _, body, _ in answers]
        assert sum(body["errno"] == "0" for body in bodies) == 3, bodies
        assert {body["data"]["reason"] for body in bodies if body["errno"] != "0"} <= {
            "segment_blocked"
        }
        assert len(sandbox.inbox()) == 5 + 3


# --- operator command --------------------------------------------------------------------


async def run_tool(config, *args: str) -> tuple[int, str]:
    """python -m tools.fraud against this test's Redis (standalone or cluster)."""
    env = {
        **os.environ,
        "SMSREG_REDIS_MODE": config.redis.mode,
        "SMSREG_REDIS_URL": config.redis.url,
        "SMSREG_REDIS_CLUSTER_NODES": config.redis.cluster_nodes,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.fraud", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, output.decode()


@pytest.mark.gen_test(timeout=90)
async def test_operator_lists_segments_and_unblocks_one(make_mode_app, sandbox, caplog):
    app = await fraud_app(make_mode_app)
    async with serving(app) as client:
        await trip_the_breaker(client, sandbox, caplog)
        await operator_lists_and_unblocks(client)


async def operator_lists_and_unblocks(client) -> None:
    config = client.app.services.config
    code, output = await run_tool(config, "list", "--state", "blocked")
    assert code == 0, output
    assert "ip:198.51.100.9" in output and "blocked" in output
    assert "1 segment(s)" in output
    code, output = await run_tool(config, "list")
    assert "net:198.51.100.0/24" in output and "elevated" in output and "2 segment(s)" in output
    code, output = await run_tool(config, "unblock", "ip:198.51.100.9")
    assert code == 0 and output.strip().endswith("ip:198.51.100.9: normal"), output
    # The address is served again (with the proof of work its network still asks for).
    mobile = fresh_mobile()
    _, body, _ = await send(client, mobile, "198.51.100.9")
    await send_ok(client, mobile, "198.51.100.9", solve(body["data"]["challenge"]))
    _, output = await run_tool(config, "list", "--state", "blocked")
    assert "ip:198.51.100.9" not in output and "0 segment(s)" in output
    code, output = await run_tool(config, "unblock", "blk:1709999")
    assert code == 1
