"""A send's reservation, composed per deployment: one script on standalone Redis
(services/store/lua/sms_send_reserve.lua), separate steps on Redis Cluster (fraud_judge.lua,
the CAPTCHA's GETDEL, limits_take.lua with sms_reserve.lua). Both are built from the same
Lua pieces; here every outcome runs through both paths, on one standalone Redis, from the
same starting state, and must give the same answer (refusal, message, reason, retry_after,
challenge level, verdict, the logs and metrics of a state change or a budget alarm) and
leave the same Redis state. tests/services/codes/test_sms_modes.py runs the stepwise path on
a real Cluster against the one-script path on standalone through send_code.

"The same state" ignores what cannot be the same in two runs a moment apart or is the same to
every reader: TTLs are rounded to seconds, a fraud timestamp becomes seconds since the run's
start, a guard's random token is a placeholder, a fraud bucket's number is summed away, and a
count at 0 equals a count never taken (the separate steps take, then give back; the one
script checks before it takes: tests/flows.py sms_keys_of has the same rule). For the same
reason a segment's counts are compared as expiring, not by when: a send counted and given
back renewed their window on the separate steps.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from services.captcha.pow import solve
from services.codes.fraud import SegmentVerdict, segments_of
from services.codes.reservation import SmsReservations
from services.codes.send_limits import Reservation, SendRequest
from services.composition import Services
from services.errors import ServiceError
from services.store import keys
from services.store.limits import RateLimiter
from tests.flows import FRAUD_FOR_TESTS

IP = "198.51.100.23"
NETWORK = "net:198.51.100.0/24"
ADDRESS = f"ip:{IP}"
MOBILE = "13912345678"
BLOCK = f"blk:{MOBILE[:7]}"
CAPTCHA_ID = "paths-captcha"
ANSWER = "ACE7"
PRICE = 450  # UNITS (services/codes/costs.py)
LIMITS = {
    "captcha_per_ip_minute": 1000,
    "sms_per_ip_hour": 3,
    "sms_global_per_hour": 10,
    "sms_per_mobile_hour": 3,
    "sms_per_mobile_day": 5,
    "sms_global_yuan_per_hour": 1.0,
}
FRAUD = {**FRAUD_FOR_TESTS, "budget_share_newcomer": 0.5, "budget_share_poor": 0.2}
PATTERNS = ("sms:*", "fraud:*", "image_code:*", "pow:*")
LOGGERS = ("services.codes.fraud", "services.codes.reservation")

T = TypeVar("T")


@dataclasses.dataclass
class Paths:
    services: Services
    stepwise: SmsReservations
    one_script: SmsReservations


@pytest.fixture
def paths(io_loop, make_services) -> Paths:
    async def build() -> Paths:
        services = await make_services(limits=LIMITS, fraud=FRAUD)
        config = services.config

        def reservations(one_script: bool) -> SmsReservations:
            return SmsReservations(
                services.redis,
                services.captchas,
                RateLimiter(services.redis),
                services.fraud,
                config.sms,
                config.limits,
                one_script=one_script,
            )

        return Paths(services, reservations(False), reservations(True))

    built: Paths = io_loop.run_sync(build)
    return built


def current_bucket(services: Services) -> int:
    fraud = services.config.fraud
    return int(time.time() * 1000) // max(1, fraud.window * 1000 // fraud.buckets)


def request(altcha: object = None, answer: str = ANSWER) -> SendRequest:
    return SendRequest(MOBILE, "mac-new", IP, altcha, True, CAPTCHA_ID, answer, PRICE)


# --- starting states: each sets Redis up for one outcome -------------------------------------

Setup = Callable[[Services], Awaitable[None]]


async def with_captcha(services: Services) -> None:
    await services.redis.set(keys.captcha_key(CAPTCHA_ID), ANSWER, ex=300)


def setting(*steps: Setup) -> Setup:
    async def setup(services: Services) -> None:
        for step in steps:
            await step(services)

    return setup


def counter(key: str, value: int, ttl: int = 3000) -> Setup:
    async def setup(services: Services) -> None:
        await services.redis.set(key, value, ex=ttl)

    return setup


def segment_counts(segment: str, sends: int, conversions: int = 0) -> Setup:
    async def setup(services: Services) -> None:
        bucket = current_bucket(services)
        counts = {f"s:{bucket}": sends, f"c:{bucket}": conversions}
        key = keys.fraud_counts_key(segment)
        await services.redis.hset(key, mapping={k: v for k, v in counts.items() if v})
        await services.redis.expire(key, 3000)

    return setup


async def blocked_address(services: Services) -> None:
    key = keys.fraud_state_key(ADDRESS)
    now_ms = int(time.time() * 1000)
    until = now_ms + 500_000
    await services.redis.hset(key, mapping={"state": "blocked", "until": until, "since": now_ms})
    await services.redis.expire(key, 900)


async def guard_standing(services: Services) -> None:
    await services.redis.set(keys.sms_guard_key(MOBILE), "someone-else", ex=50)


async def old_code(services: Services) -> None:
    await services.redis.hset(keys.sms_code_key(MOBILE), mapping={"mac": "mac-old", "tries": 1})
    await services.redis.expire(keys.sms_code_key(MOBILE), 200)


GOOD = segment_counts(ADDRESS, 0, 1)  # a conversion of its own: credit for a good send
POOR_NETWORK = segment_counts(NETWORK, 6)  # unconverted past min_sends: proof of work
BUDGET = keys.sms_global_hourly_key()
IP_COUNT = keys.sms_ip_hourly_key(IP)

SCENARIOS: dict[str, tuple[Setup, bool]] = {
    # name: (starting state, solve a proof of work)
    "sent": (with_captcha, False),
    "sent, replacing a code": (setting(with_captcha, old_code), False),
    "sent, good tier": (setting(with_captcha, GOOD), False),
    "sent after a proof of work, poor tier": (setting(with_captcha, POOR_NETWORK), True),
    "pow_required": (setting(with_captcha, POOR_NETWORK), False),
    "pow_required, no CAPTCHA": (POOR_NETWORK, False),
    "segment_blocked": (setting(with_captcha, blocked_address), False),
    "CAPTCHA gone": (setting(counter(IP_COUNT, 1)), False),
    "CAPTCHA wrong": (setting(with_captcha, counter(IP_COUNT, 1)), False),
    "ip_hourly": (setting(with_captcha, counter(IP_COUNT, 3)), False),
    "resend_interval": (setting(with_captcha, guard_standing, old_code), False),
    "mobile_hourly": (setting(with_captcha, counter(keys.sms_mobile_hourly_key(MOBILE), 3)), False),
    "mobile_daily": (setting(with_captcha, counter(keys.sms_mobile_daily_key(MOBILE), 5)), False),
    "global_hourly, good tier": (setting(with_captcha, GOOD, counter(BUDGET, 10)), False),
    "budget_shed, newcomer": (setting(with_captcha, counter(BUDGET, 5)), False),
    "budget_shed, poor": (setting(with_captcha, POOR_NETWORK, counter(BUDGET, 2)), True),
    "global_yuan_hourly": (
        setting(with_captcha, GOOD, counter(keys.sms_global_spend_key(), 10_000 - PRICE + 1)),
        False,
    ),
    "ip before guard": (setting(with_captcha, counter(IP_COUNT, 3), guard_standing), False),
    "guard before budget": (setting(with_captcha, guard_standing, counter(BUDGET, 10)), False),
    "daily before budget": (
        setting(with_captcha, counter(keys.sms_mobile_daily_key(MOBILE), 5), counter(BUDGET, 10)),
        False,
    ),
}


# --- what a run answers and leaves behind ----------------------------------------------------


def level_of(challenge: object) -> object:
    """The level a proof-of-work challenge asks for (the rest of it is random)."""
    if isinstance(challenge, dict):
        if "level" in challenge:
            return challenge["level"]
        for value in challenge.values():
            found = level_of(value)
            if found is not None:
                return found
    return None


def answer_of(result: tuple[SegmentVerdict, Reservation] | ServiceError) -> object:
    if isinstance(result, ServiceError):
        data = dict(result.data)
        if "challenge" in data:
            data["challenge"] = level_of(data["challenge"])
        return (result.ret, result.errmsg, data, result.retry_after, result.field)
    verdict, send = result
    replaced = send.replaced_code[:2]  # its expiry (ms) is the test's clock
    return (
        "ok",
        verdict.tier,
        verdict.bucket is not None,
        [segment.name for segment in verdict.segments],
        send.counts,
        replaced,
    )


async def redis_state(services: Services, start_ms: int) -> dict[str, object]:
    """Every key a reservation can touch, normalized (the module's docstring); a timestamp as
    seconds since `start_ms`, the run's start."""
    redis = services.redis
    state: dict[str, object] = {}
    for pattern in PATTERNS:
        async for key in redis.scan_iter(match=pattern):
            kind = await redis.type(key)
            value: Any
            if kind == "string":
                value = await redis.get(key)
                if key == keys.sms_guard_key(MOBILE) and value != "someone-else":
                    value = "<this send's token>"
                if key.startswith("pow:"):
                    key, value = "pow:<nonce>:used", "1"
                if value == "0":
                    continue  # a count given back
            else:
                value = await redis.hgetall(key)
                if key.endswith(":counts"):
                    sums: dict[str, int] = {}
                    for field, count in value.items():
                        sums[field[:1]] = sums.get(field[:1], 0) + int(count)
                    value = {kind: total for kind, total in sums.items() if total}
                for field in ("since", "until"):
                    if field in value:
                        value[field] = round((int(value[field]) - start_ms) / 1000)
                if value.get("rsends") == "0" and value.get("state") != "elevated":
                    del value["rsends"]
                if not value:
                    continue
            ttl: object = round(await redis.pttl(key) / 1000)
            if key.endswith(":counts") and isinstance(ttl, int) and ttl > 0:
                # Counting a send renews a segment's window (EXPIRE), and a give-back cannot
                # undo that: after a refusal the separate steps leave it renewed, the one
                # script (which never counted) leaves it as it was. Either way it expires.
                ttl = "expires"
            state[key] = (value, ttl)
    return state


async def clear(services: Services) -> None:
    for pattern in PATTERNS:
        async for key in services.redis.scan_iter(match=pattern):
            await services.redis.delete(key)


def metrics_of(services: Services) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in services.metrics.registry.collect():
        if family.name.startswith(("smsreg_fraud", "smsreg_pow")):
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # when a label was first seen, not a count
                labels = tuple(sorted(sample.labels.items()))
                samples[(sample.name, labels)] = sample.value
    return samples


async def run(
    paths: Paths, reservations: SmsReservations, setup: Setup, with_proof: bool, caplog: Any
) -> dict[str, object]:
    services = paths.services
    await clear(services)
    start_ms = int(time.time() * 1000)
    await setup(services)
    altcha = solve(services.fraud._pow.challenge(10)) if with_proof else None
    metrics_before = metrics_of(services)
    caplog.clear()
    answer_text = ANSWER.lower()  # any case is right
    if setup is SCENARIOS["CAPTCHA wrong"][0]:
        answer_text = "ZZZZ"
    result: tuple[SegmentVerdict, Reservation] | ServiceError
    try:
        result = await reservations.reserve_send(request(altcha, answer_text))
    except ServiceError as refused:
        result = refused
    metrics_after = metrics_of(services)
    return {
        "answer": answer_of(result),
        "redis": await redis_state(services, start_ms),
        "logs": [
            (record.name, record.levelname, record.getMessage())
            for record in caplog.records
            if record.name in LOGGERS
        ],
        "metrics": {
            name: value - metrics_before.get(name, 0.0)
            for name, value in metrics_after.items()
            if value != metrics_before.get(name, 0.0)
        },
        "result": result,
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.gen_test(timeout=60)
async def test_both_paths_answer_alike_and_leave_redis_alike(paths, scenario, caplog):
    caplog.set_level(logging.INFO)
    setup, with_proof = SCENARIOS[scenario]
    stepwise = await run(paths, paths.stepwise, setup, with_proof, caplog)
    one_script = await run(paths, paths.one_script, setup, with_proof, caplog)
    stepwise.pop("result")
    one_script.pop("result")
    assert one_script == stepwise
    assert paths.one_script.one_script and not paths.stepwise.one_script


EXPECTED = {
    "sent": "ok",
    "pow_required": "pow_required",
    "segment_blocked": "segment_blocked",
    "CAPTCHA gone": "NODATA",
    "CAPTCHA wrong": "DATAERR",
    "ip_hourly": "ip_hourly",
    "resend_interval": "resend_interval",
    "mobile_hourly": "mobile_hourly",
    "mobile_daily": "mobile_daily",
    "global_hourly, good tier": "global_hourly",
    "budget_shed, newcomer": "budget_shed",
    "budget_shed, poor": "budget_shed",
    "global_yuan_hourly": "global_yuan_hourly",
    "ip before guard": "ip_hourly",
    "guard before budget": "resend_interval",
    "daily before budget": "mobile_daily",
}


@pytest.mark.parametrize("scenario", list(EXPECTED))
@pytest.mark.gen_test(timeout=60)
async def test_each_scenario_reaches_the_outcome_it_names(paths, scenario, caplog):
    """The comparison above is only worth as much as its scenarios: each reaches its outcome."""
    setup, with_proof = SCENARIOS[scenario]
    result = (await run(paths, paths.one_script, setup, with_proof, caplog))["result"]
    got = (
        (result.data.get("reason") or result.ret.name) if isinstance(result, ServiceError) else "ok"
    )
    assert got == EXPECTED[scenario]


@pytest.mark.parametrize("fails_after", ["a fresh send", "a send replacing a code"])
@pytest.mark.gen_test(timeout=60)
async def test_a_failed_send_gives_everything_back_alike(paths, fails_after, caplog):
    """give_back of the reservation and of the fraud place (a send that did not go out)
    leaves the state the send found, on both paths."""
    setup = with_captcha if fails_after == "a fresh send" else setting(with_captcha, old_code)
    states = []
    for reservations in (paths.stepwise, paths.one_script):
        await clear(paths.services)
        start_ms = int(time.time() * 1000)
        await setup(paths.services)
        await paths.services.redis.delete(keys.captcha_key(CAPTCHA_ID))
        before = await redis_state(paths.services, start_ms)
        await setup(paths.services)
        verdict, send = await reservations.reserve_send(request())
        await reservations.give_back(send, verdict)
        after = await redis_state(paths.services, start_ms)
        assert after == before
        assert verdict.bucket is None  # given back once
        states.append(after)
    assert states[0] == states[1]


def test_the_segments_of_the_scenarios():
    assert [segment.name for segment in segments_of(MOBILE, IP)] == [ADDRESS, NETWORK, BLOCK]
