"""The SMS reservation (CAPTCHA, then every limit of a send) on standalone Redis and on a real
3-master Redis Cluster: the same scenarios, the same answers, without HTTP.

Each scenario runs once per mode and compares its answers with one expected list, so both
modes give identical answers. Services are built by the server's own open_services(), on the
session's MariaDB and Ronglian sandbox.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from services.codes.purposes import Purpose
from services.composition import Services
from services.store import keys
from tests.flows import (
    PASSWORD_HASH,
    last_code,
    outcome,
    pass_resend_interval,
    sms_keys_of,
    solved_captcha,
)

_captcha_ids = itertools.count()


@pytest.fixture
def build_services(make_services, redis_mode):
    """make_services (tests/services/conftest.py) on each Redis mode (tests/conftest.py)."""

    async def build(**changes: object) -> Services:
        return await make_services(**redis_mode, **changes)

    return build


def with_limits(**limits: int) -> dict[str, object]:
    return {"limits": {"captcha_per_ip_minute": 1000, **limits}}


async def new_captcha(services: Services) -> tuple[str, str]:
    """A fresh CAPTCHA: (its id, its answer)."""
    captcha_id = f"modes-{next(_captcha_ids)}"
    return captcha_id, await solved_captcha(services, captcha_id)


async def send(
    services: Services,
    mobile: str,
    ip: str = "203.0.113.1",
    purpose: Purpose = Purpose.REGISTER,
    captcha: tuple[str, str] | None = None,
) -> str:
    """One send's answer: "ok", a limit's reason, or the RET name (NODATA, DATAERR, ...)."""
    captcha_id, text = captcha or await new_captcha(services)
    sent = services.sms.send_code(mobile, text, captcha_id, ip, purpose=purpose)
    return await outcome(sent, by_reason=True)


async def snapshot(services: Services, mobile: str, ip: str) -> dict[str, object]:
    """What a send can change: the mobile's guard, code and counts, the address's and the
    global counts (a count given back to 0 and one never taken are the same)."""
    state = await sms_keys_of(services.redis, mobile)
    for key in (keys.sms_ip_hourly_key(ip), keys.sms_global_hourly_key()):
        state[key] = int(await services.redis.get(key) or 0)
    return state


async def verified(services: Services, mobile: str, purpose: Purpose, code: str) -> str:
    return await outcome(services.sms.verify_code(mobile, purpose, code))


@pytest.mark.gen_test(timeout=60)
async def test_fresh_send_then_resend_inside_the_guard(build_services, sandbox, fresh_mobile):
    services = await build_services()
    mobile = fresh_mobile()
    assert [await send(services, mobile), await send(services, mobile)] == [
        "ok",
        "resend_interval",
    ]
    assert len(sandbox.inbox(mobile)) == 1
    code = last_code(sandbox, mobile)
    assert await verified(services, mobile, Purpose.REGISTER, code) == "ok"


@pytest.mark.gen_test(timeout=60)
async def test_mobile_hourly_then_daily_cap(build_services, sandbox, fresh_mobile):
    services = await build_services(**with_limits(sms_per_mobile_hour=2, sms_per_mobile_day=3))
    mobile = fresh_mobile()
    answers = []

    async def send_and_wait_out_the_guard() -> None:
        answers.append(await send(services, mobile))
        await pass_resend_interval(services.redis, mobile)
        sandbox.clear()  # the sandbox's own 30 s rule is not what this test is about

    for _ in range(3):
        await send_and_wait_out_the_guard()
    await services.redis.delete(keys.sms_mobile_hourly_key(mobile))  # the hour has passed
    for _ in range(2):
        await send_and_wait_out_the_guard()
    assert answers == ["ok", "ok", "mobile_hourly", "ok", "mobile_daily"]
    assert await services.redis.get(keys.sms_mobile_daily_key(mobile)) == "3"


@pytest.mark.gen_test(timeout=60)
async def test_per_ip_then_global_cap_in_order(build_services, sandbox, fresh_mobile):
    services = await build_services(**with_limits(sms_per_ip_hour=2, sms_global_per_hour=3))
    first, second, third, fourth, fifth = (fresh_mobile() for _ in range(5))
    answers = [
        await send(services, first, ip="203.0.113.1"),
        await send(services, second, ip="203.0.113.1"),
        # Both the address and the mobile's guard are full: the address is named first.
        await send(services, second, ip="203.0.113.1"),
        await send(services, third, ip="203.0.113.1"),
        await send(services, fourth, ip="203.0.113.2"),
        await send(services, fifth, ip="203.0.113.3"),
        # The budget and the mobile's guard are full: the guard is named first.
        await send(services, fourth, ip="203.0.113.4"),
        # The budget and the address are full: the address is named first.
        await send(services, fifth, ip="203.0.113.1"),
    ]
    assert answers == [
        "ok",
        "ok",
        "ip_hourly",
        "ip_hourly",
        "ok",
        "global_hourly",
        "resend_interval",
        "ip_hourly",
    ]
    assert len(sandbox.inbox()) == 3


@pytest.mark.gen_test(timeout=60)
async def test_wrong_gone_and_reused_captcha(build_services, sandbox, fresh_mobile):
    services = await build_services()
    mobile = fresh_mobile()
    before = await snapshot(services, mobile, "203.0.113.1")
    captcha_id, text = await new_captcha(services)
    wrong = "Z" * len(text) if text != "Z" * len(text) else "Y" * len(text)
    right_id, right_text = await new_captcha(services)
    answers = [
        await send(services, mobile, captcha=(captcha_id, wrong)),
        await send(services, mobile, captcha=(captcha_id, text)),  # used up by the wrong try
        await send(services, mobile, captcha=("never-issued", "ABCD")),
    ]
    assert await snapshot(services, mobile, "203.0.113.1") == before
    answers += [
        await send(services, mobile, captcha=(right_id, right_text.lower())),  # any case
        await send(services, fresh_mobile(), captcha=(right_id, right_text)),  # used once
    ]
    assert answers == ["DATAERR", "NODATA", "NODATA", "ok", "NODATA"]
    assert len(sandbox.inbox()) == 1


@pytest.mark.gen_test(timeout=60)
async def test_refusals_after_the_guard_leave_the_previous_code_and_counts(
    build_services, sandbox, fresh_mobile
):
    """A refusal decided after the mobile's reservation (another limit, or "already
    registered") puts everything back, the code the user already has included."""
    services = await build_services(**with_limits(sms_per_ip_hour=1))
    mobile, member = fresh_mobile(), fresh_mobile()
    assert await send(services, mobile, ip="203.0.113.1") == "ok"
    await pass_resend_interval(services.redis, mobile)
    before = await snapshot(services, mobile, "203.0.113.1")
    assert await send(services, mobile, ip="203.0.113.1") == "ip_hourly"
    assert await snapshot(services, mobile, "203.0.113.1") == before
    code = last_code(sandbox, mobile)
    assert await verified(services, mobile, Purpose.REGISTER, code) == "ok"

    await services.users.create(member, member, PASSWORD_HASH)
    assert await send(services, member, ip="203.0.113.2", purpose=Purpose.LOGIN) == "ok"
    await pass_resend_interval(services.redis, member)
    before = await snapshot(services, member, "203.0.113.3")
    assert await send(services, member, ip="203.0.113.3") == "DATAEXIST"
    assert await snapshot(services, member, "203.0.113.3") == before
    login_code = last_code(sandbox, member)
    assert await verified(services, member, Purpose.LOGIN, login_code) == "ok"
    assert len(sandbox.inbox(member)) == 1


async def race(calls: list[Callable[[], Awaitable[str]]]) -> list[str]:
    return sorted(await asyncio.gather(*(call() for call in calls)))


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_requests_for_one_mobile_send_one_sms(
    build_services, sandbox, fresh_mobile
):
    services = await build_services(**with_limits())
    mobile = fresh_mobile()
    captchas = [await new_captcha(services) for _ in range(12)]
    answers = await race(
        [lambda captcha=captcha: send(services, mobile, captcha=captcha) for captcha in captchas]
    )
    assert answers == ["ok"] + ["resend_interval"] * 11
    assert len(sandbox.inbox(mobile)) == 1
    assert await services.redis.get(keys.sms_mobile_hourly_key(mobile)) == "1"


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_uses_of_one_captcha_pass_once(build_services, sandbox, fresh_mobile):
    services = await build_services()
    captcha = await new_captcha(services)
    mobiles = [fresh_mobile() for _ in range(12)]
    answers = await race([lambda m=m: send(services, m, captcha=captcha) for m in mobiles])
    assert answers == ["NODATA"] * 11 + ["ok"]
    assert len(sandbox.inbox()) == 1


@pytest.mark.gen_test(timeout=60)
async def test_a_failed_send_gives_everything_back(build_services, sandbox, fresh_mobile):
    services = await build_services()
    mobile = fresh_mobile()
    before = await snapshot(services, mobile, "203.0.113.1")
    sandbox.set_fault(mode="status", times=1)
    assert await send(services, mobile) == "THIRDERR"
    assert await snapshot(services, mobile, "203.0.113.1") == before
    assert await send(services, mobile) == "ok"  # no guard left behind
