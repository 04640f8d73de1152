"""The fraud verdict on one send is one atomic step over its segments, on standalone
Redis and on a real 3-master Redis Cluster (FraudGuard without HTTP).

A send refused by one segment (a blocked address) must take nothing in the others, not even
for a moment: a send counted and given back a moment later would raise the proof-of-work
level of a network or number block for everyone in it, for sends that never happened.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from services.captcha.pow import solve
from services.codes.fraud import segments_of
from services.codes.purposes import Purpose
from services.composition import Services
from services.config import FraudConfig
from services.errors import ServiceError
from tests.flows import CLIENT_IP, FRAUD_FOR_TESTS, last_code, outcome, send_code

FRAUD = FRAUD_FOR_TESTS  # a breaker trips in a handful of requests (tests/flows.py)

_numbers = itertools.count(1)


def mobile_in(block: str) -> str:
    return f"{block}{next(_numbers) % 10_000:04d}"


def fresh_block() -> str:
    return f"139{next(_numbers) % 10_000:04d}"


@pytest.fixture
def build_services(make_services, redis_mode):
    async def build() -> Services:
        return await make_services(**redis_mode, fraud=FRAUD)

    return build


def proof(services: Services, level: int = 10) -> str:
    """A solved proof of work, as a client sends it (of the highest level: always enough)."""
    return solve(services.fraud._pow.challenge(level))


async def admit(services: Services, mobile: str, ip: str, altcha: str | None = None) -> str:
    """One verdict: "ok" or the refusal's reason (pow_required, segment_blocked)."""
    return await outcome(services.fraud.judge(mobile, ip, altcha), by_reason=True)


async def block_the_address(services: Services, ip: str) -> None:
    """min_sends unconverted sends, then one probation round: the address is blocked."""
    for _ in range(5):
        assert await admit(services, mobile_in(fresh_block()), ip) == "ok"
    assert await admit(services, mobile_in(fresh_block()), ip) == "pow_required"
    for _ in range(3):
        assert await admit(services, mobile_in(fresh_block()), ip, proof(services)) == "ok"
    assert await admit(services, mobile_in(fresh_block()), ip) == "segment_blocked"


@pytest.mark.gen_test(timeout=90)
async def test_a_send_refused_by_one_segment_takes_no_place_in_the_others(build_services):
    services = await build_services()
    await block_the_address(services, "198.51.100.7")
    network_before = await services.fraud.segment_status("net:198.51.100.0/24")
    # The attack: 20 concurrent requests with valid proofs of work from the blocked address
    # into one number block, and one honest request from the same network.
    proofs = [proof(services) for _ in range(21)]
    attack = [admit(services, mobile_in("1700001"), "198.51.100.7", proofs[i]) for i in range(20)]
    honest = admit(services, mobile_in("1700001"), "198.51.100.200", proofs[20])
    answers = await asyncio.gather(*attack, honest)
    assert answers[:-1] == ["segment_blocked"] * 20
    # Only the narrowest segment refuses: the neighbour on the same network is served.
    assert answers[-1] == "ok"
    network = await services.fraud.segment_status("net:198.51.100.0/24")
    block = await services.fraud.segment_status("blk:1700001")
    # The refused requests were counted nowhere: the network and the block hold one more
    # send each, the honest one's.
    assert (network.sends, block.sends) == (network_before.sends + 1, 1)


async def counts(services: Services, mobile: str) -> list[tuple[int, int]]:
    """(sends, conversions) of each segment of a send to mobile from CLIENT_IP."""
    statuses = [await services.fraud.segment_status(s.name) for s in segments_of(mobile, CLIENT_IP)]
    return [(status.sends, status.conversions) for status in statuses]


@pytest.mark.gen_test(timeout=60)
async def test_a_send_refused_later_gives_back_and_a_verified_code_converts_all_three(
    build_services, sandbox
):
    services = await build_services()
    mobile = mobile_in(fresh_block())
    await send_code(services, mobile, captcha_id="first")
    # Admitted by the segments, then refused by the resend guard: its counts are given back.
    second = send_code(services, mobile, captcha_id="second")
    assert await outcome(second, by_reason=True) == "resend_interval"
    assert await counts(services, mobile) == [(1, 0)] * 3
    # The code is verified: one conversion in each segment of the send that delivered it.
    code = last_code(sandbox, mobile)
    assert await outcome(services.sms.verify_code(mobile, Purpose.REGISTER, code)) == "ok"
    assert await counts(services, mobile) == [(1, 1)] * 3


async def level_asked(services: Services, mobile: str, ip: str) -> int:
    """The proof-of-work level one send is asked for (0: none), then the send, admitted."""
    try:
        await services.fraud.judge(mobile, ip, None)
    except ServiceError as refused:
        challenge = refused.data["challenge"]
        await services.fraud.judge(mobile, ip, solve(challenge))
        return int(challenge["parameters"]["data"]["level"])
    return 0


SHIPPED = FraudConfig()  # config.yml's values (tests/services/config/test_config.py)


@pytest.mark.gen_test(timeout=60)
async def test_a_pumped_number_block_grows_dear_fast_and_a_conversion_takes_back_bounded(
    make_services, redis_mode
):
    """The shipped escalation of a number block: after min_sends (3) sends nobody verifies,
    level 1, then levels_per_send (2) levels more with every unverified send (4x the work), up
    to pow_max_level (10); a conversion takes back 100 / min_conversion_percent = 5 unconverted
    sends. With one level per send past 5 sends, a pump had 5 free sends in every block and
    then 9 cheap ones."""
    assert (SHIPPED.min_sends, SHIPPED.levels_per_send, SHIPPED.pow_max_level) == (3, 2, 10)
    ramp = {key: getattr(SHIPPED, key) for key in ("min_sends", "levels_per_send", "pow_max_level")}
    # The shipped ramp; the test's tiny proofs of work (FRAUD_FOR_TESTS).
    services = await make_services(**redis_mode, fraud={**FRAUD, **ramp})
    block = "1700042"
    # Each send from a network of its own: only the number block is judged.
    levels = [await level_asked(services, mobile_in(block), f"203.0.{i}.5") for i in range(10)]
    assert levels == [0, 0, 0, 1, 3, 5, 7, 9, 10, 10]
    assert (await services.fraud.segment_status(f"blk:{block}")).level == 10
    # One more send, and its code is verified: 11 sends, 1 conversion, so 6 unconverted, 3
    # past min_sends.
    mobile = mobile_in(block)
    verdict = await services.fraud.judge(mobile, "203.0.10.5", proof(services))
    async with services.redis.pipeline(transaction=False) as pipe:
        services.fraud.remember_send(pipe, mobile, verdict, 300)
        await pipe.execute()
    await services.fraud.converted(mobile)
    assert await level_asked(services, mobile_in(block), "203.0.11.5") == 1 + 2 * 3
