"""SendGate without HTTP: the bound follows the event loop's lag (samples fed by the test).

tests/test_admission.py covers the shedding itself against the real server process.
"""

from __future__ import annotations

import pytest

from services.codes.admission import Overloaded, SendGate


def fill(gate: SendGate) -> list:
    """Take every place the gate has now; the open contexts (release with close_all)."""
    held = []
    while True:
        context = gate.admit()
        try:
            context.__enter__()
        except Overloaded:
            return held
        held.append(context)


def close_all(held: list) -> None:
    for context in held:
        context.__exit__(None, None, None)


def test_a_lagging_loop_shrinks_the_bound_to_the_floor_and_a_quiet_one_restores_it():
    gate = SendGate(100, 1, floor=16, max_loop_lag=0.02)
    assert gate.limit == 100
    for _ in range(100):
        gate.observe_lag(0.08)  # the CPU is saturated: every step waits 80 ms
    assert gate.limit == 16
    held = fill(gate)
    assert len(held) == 16  # the floor: sends beyond it are shed
    with pytest.raises(Overloaded) as refusal:
        gate.admit().__enter__()
    assert (refusal.value.http_status, refusal.value.retry_after) == (503, 1)  # 1 ± 0
    close_all(held)
    assert gate.in_flight == 0
    for _ in range(100):
        gate.observe_lag(0.001)  # the lag is gone
    assert gate.limit == 100
    held = fill(gate)
    assert len(held) == 100  # and never more than the ceiling
    close_all(held)


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


def test_a_failed_send_gives_its_place_back():
    gate = SendGate(1, 1)
    with pytest.raises(RuntimeError), gate.admit():
        raise RuntimeError("the provider failed")
    assert gate.in_flight == 0
    with gate.admit():
        assert gate.in_flight == 1


def test_shed_sends_are_told_to_come_back_at_different_times_around_the_base():
    # All shed at once, all told "2 s": all back at once, a burst that is shed again.
    gate = SendGate(1, 4, floor=1)
    held = fill(gate)
    waits = []
    for _ in range(400):
        with pytest.raises(Overloaded) as refusal:
            gate.admit().__enter__()
        waits.append(refusal.value.retry_after)
    close_all(held)
    assert set(waits) == {2, 3, 4, 5, 6}  # spread evenly by half the base either side
    assert 3.7 <= sum(waits) / len(waits) <= 4.3  # the base stays the mean
    assert {SendGate(1, 1).spread_retry_after() for _ in range(50)} == {1}  # never below 1 s
