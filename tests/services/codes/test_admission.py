"""SendGate without HTTP: the bound follows the event loop's lag (samples fed by the test),
and a send the gate refuses after its reservation gives back everything it took.

tests/test_admission.py covers the shedding itself against the real server process.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.codes.admission import MAX_WAITERS_PER_PLACE, Gate, Overloaded, SendGate
from services.codes.fraud import segments_of
from services.codes.purposes import Purpose
from services.codes.sms import SentCode
from services.store import keys
from tests.flows import (
    CLIENT_IP,
    pass_resend_interval,
    refusal,
    send_code,
    sms_keys_of,
    solved_captcha,
)
from tests.polling import async_wait_until

LIMIT = 2


async def fill(gate: SendGate) -> contextlib.AsyncExitStack:
    """Take every place the gate has now (without waiting); close the stack to free them."""
    held = contextlib.AsyncExitStack()
    while not gate.shedding():
        await held.enter_async_context(gate.admit_paid())
    return held


def in_flight_of(gate: SendGate):
    async def probe() -> int:
        return gate.in_flight

    return probe


def waiting_at(gate: SendGate):
    async def probe() -> int:
        return gate.waiting

    return probe


async def shed(gate: SendGate) -> Overloaded:
    """The refusal a send gets now (the gate is full, no place freed within shed_delay)."""
    with pytest.raises(Overloaded) as refusal:
        async with gate.admit_paid():
            pass
    return refusal.value


@pytest.mark.gen_test
async def test_a_lagging_loop_shrinks_the_bound_to_the_floor_and_a_quiet_one_restores_it():
    gate = SendGate(100, 1, floor=16, max_loop_lag=0.02)
    assert gate.limit == 100
    for _ in range(100):
        gate.observe_lag(0.08)  # the CPU is saturated: every step waits 80 ms
    assert gate.limit == 16
    held = await fill(gate)
    assert gate.in_flight == 16  # the floor: sends beyond it are shed
    refusal = await shed(gate)
    assert (refusal.http_status, refusal.retry_after) == (503, 1)  # 1 ± 0
    await held.aclose()
    assert gate.in_flight == 0
    for _ in range(100):
        gate.observe_lag(0.001)  # the lag is gone
    assert gate.limit == 100
    held = await fill(gate)
    assert gate.in_flight == 100  # and never more than the ceiling
    await held.aclose()


def test_shrinks_by_a_tenth_per_lagging_sample_and_grows_by_two():
    gate = SendGate(100, 1, floor=16, max_loop_lag=0.02)
    gate.observe_lag(0.021)
    assert gate.limit == 90
    gate.observe_lag(0.019)
    assert gate.limit == 92


def test_without_a_lag_target_the_bound_stays_at_the_ceiling():
    gate = SendGate(100, 1, floor=16, max_loop_lag=0.0)
    for _ in range(50):
        gate.observe_lag(1.0)
    assert gate.limit == 100


def test_the_floor_never_exceeds_the_ceiling():
    gate = SendGate(2, 1, floor=16, max_loop_lag=0.02)
    gate.observe_lag(1.0)
    assert (gate.floor, gate.limit) == (2, 2)


@pytest.mark.gen_test
async def test_a_failed_send_gives_its_place_back():
    gate = SendGate(1, 1)
    with pytest.raises(RuntimeError):
        async with gate.admit_paid():
            raise RuntimeError("the provider failed")
    assert gate.in_flight == 0
    async with gate.admit_paid():
        assert gate.in_flight == 1


@pytest.mark.gen_test
async def test_a_send_that_paid_waits_for_the_next_place_and_no_newcomer_barges_in():
    """Full: a send that already paid (its reservation made) waits for the next place freed,
    first come first served, while the early check sheds every newcomer; a place is handed
    over, never counted twice."""
    gate = SendGate(1, 1, shed_delay=60)
    first_done = asyncio.Event()
    order: list[str] = []

    async def send(name: str, hold: asyncio.Event | None = None) -> None:
        async with gate.admit_paid():
            order.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.ensure_future(send("first", first_done))
    await async_wait_until(in_flight_of(gate), lambda n: n == 1, what="first admitted")
    waiters = [asyncio.ensure_future(send(f"paid-{n}")) for n in range(3)]
    await async_wait_until(waiting_at(gate), lambda n: n == 3, what="three waiting")
    assert gate.shedding()  # a newcomer is shed before it uses anything
    assert gate.in_flight == 1
    first_done.set()
    await asyncio.gather(first, *waiters)
    assert order == ["first", "paid-0", "paid-1", "paid-2"]
    assert (gate.in_flight, gate.shedding()) == (0, False)


@pytest.mark.gen_test
async def test_a_send_that_waits_too_long_is_refused_and_leaves_the_queue():
    gate = SendGate(1, 1, shed_delay=0.01)
    async with gate.admit_paid():
        refusal = await shed(gate)  # no place freed within shed_delay
        assert refusal.http_status == 503
        assert not gate._waiting and gate.in_flight == 1
    assert (gate.in_flight, gate.shedding()) == (0, False)


@pytest.mark.gen_test
async def test_a_paid_send_waits_paid_wait_not_shed_delay_and_the_queue_is_bounded():
    """admission.paid_wait (how long a send that paid waits) is its own setting, apart from
    shed_delay (how long an unpaid shed is held); the queue holds at most
    MAX_WAITERS_PER_PLACE per place, beyond which a paid send is refused at once."""
    gate = SendGate(1, 1, shed_delay=0.01, paid_wait=60)
    held = asyncio.Event()

    async def send() -> None:
        async with gate.admit_paid():
            await held.wait()

    first = asyncio.ensure_future(send())
    await async_wait_until(in_flight_of(gate), lambda n: n == 1, what="first admitted")
    queued = [asyncio.ensure_future(send()) for _ in range(MAX_WAITERS_PER_PLACE)]
    await async_wait_until(
        waiting_at(gate), lambda n: n == MAX_WAITERS_PER_PLACE, what="the queue full"
    )
    refusal = await shed(gate)  # one more: refused at once, not queued
    assert refusal.hold == 0 and gate.waiting == MAX_WAITERS_PER_PLACE
    held.set()
    await asyncio.gather(first, *queued)  # each waited longer than shed_delay, and was served
    assert (gate.in_flight, gate.waiting) == (0, 0)


@pytest.mark.gen_test
async def test_without_paid_wait_a_paid_job_is_refused_at_once():
    gate = Gate(1, 1)  # the hashing bound with accounts.paid_hash_wait 0
    with gate.admit(), pytest.raises(Overloaded):
        async with gate.admit_paid():
            pass
    assert (gate.in_flight, gate.waiting) == (0, 0)


@pytest.mark.gen_test
async def test_shed_sends_are_told_to_come_back_at_different_times_around_the_base():
    # All shed at once, all told "2 s": all back at once, a burst that is shed again.
    gate = SendGate(1, 4, floor=1)
    held = await fill(gate)
    waits = [(await shed(gate)).retry_after for _ in range(400)]
    await held.aclose()
    assert set(waits) == {2, 3, 4, 5, 6}  # spread evenly by half the base either side
    assert 3.7 <= sum(waits) / len(waits) <= 4.3  # the base stays the mean
    assert {SendGate(1, 1).spread_retry_after() for _ in range(50)} == {1}  # never below 1 s


async def what_a_send_takes(services, mobile: str) -> dict[str, object]:
    """Everything a reservation takes for `mobile` from CLIENT_IP: the mobile's guard, code
    and counts, the address and global counts, the sends counted in its fraud segments."""
    redis = services.redis
    return {
        **await sms_keys_of(redis, mobile),
        "ip": int(await redis.get(keys.sms_ip_hourly_key(CLIENT_IP)) or 0),
        "global": int(await redis.get(keys.sms_global_hourly_key()) or 0),
        "segments": [
            (await services.fraud.segment_status(segment.name)).sends
            for segment in segments_of(mobile, CLIENT_IP)
        ],
    }


@pytest.mark.gen_test(timeout=60)
async def test_a_send_refused_after_its_reservation_gives_everything_back(
    make_services, sandbox, fresh_mobile
):
    """A send takes its in-flight place only after its reservation (issue 27, item 5). If the
    places filled up meanwhile, it is refused (503 overloaded) and gives back everything the
    reservation took, as after any other refusal: no guard, no new code, no count, the
    pending code put back; the CAPTCHA stays used up (the client paid with it). The
    client's next attempt works."""
    services = await make_services(
        admission={"max_sends_in_flight": LIMIT},
        ronglian={"request_timeout": 60},  # the held sends are released explicitly
    )
    mobile = fresh_mobile()
    await send_code(services, mobile, captcha_id="first")  # a pending code, to be kept
    await pass_resend_interval(services.redis, mobile)

    # The places are full: LIMIT sends held at the provider (sandbox "hold").
    sandbox.set_fault(mode="hold", times=LIMIT)
    held = [
        asyncio.ensure_future(send_code(services, fresh_mobile(), captcha_id=f"held-{n}"))
        for n in range(LIMIT)
    ]

    async def held_at_provider() -> int:
        return int(sandbox.faults()["held"])

    try:
        await async_wait_until(held_at_provider, lambda n: n == LIMIT, what="sends held")
        before = await what_a_send_takes(services, mobile)
        answer = await solved_captcha(services, "late")
        refused = await refusal(services.sms.send_code(mobile, answer, "late", CLIENT_IP))
        assert isinstance(refused, Overloaded) and refused.http_status == 503
        assert refused.data["reason"] == "overloaded"
        assert await what_a_send_takes(services, mobile) == before  # nothing half-done
        assert await services.redis.get(keys.captcha_key("late")) is None  # paid with
        assert len(sandbox.inbox(mobile)) == 1
    finally:
        sandbox.reset_faults()
        sent = await asyncio.gather(*held, return_exceptions=True)
    assert all(isinstance(each, SentCode) for each in sent), sent  # released, each went out
    assert services.sms.overloaded() is None

    # The next attempt, with a new CAPTCHA, sends a new code, and that code works.
    sandbox.clear()  # the sandbox's own 30 s rule per number is not what this is about
    await send_code(services, mobile, captcha_id="again")
    [message] = sandbox.inbox(mobile)
    assert (await sms_keys_of(services.redis, mobile))["hourly"] == 2
    verified = await services.sms.verify_code(mobile, Purpose.REGISTER, message["datas"][0])
    assert verified.mobile == mobile


class LastValue:
    """A gauge that keeps what it was last set to (prometheus_client's Gauge has the same set)."""

    value: float | None = None

    def set(self, value: float) -> None:
        self.value = value


@pytest.mark.parametrize("max_loop_lag", [0.02, 0.0])
def test_each_lag_sample_is_shown_whether_or_not_the_bound_follows_it(max_loop_lag):
    shown = LastValue()
    gate = SendGate(100, 1, floor=16, max_loop_lag=max_loop_lag, lag_gauge=shown)
    gate.observe_lag(0.08)
    assert shown.value == 0.08  # smsreg_event_loop_lag_seconds, for the loop-lag alert
    gate.observe_lag(0.001)
    assert shown.value == 0.001
