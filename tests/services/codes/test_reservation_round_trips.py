"""What a send's reservation costs in round trips to Redis: one on standalone (the one
script), the separate steps on Cluster (tests/services/codes/test_reservation_paths.py proves
both answer alike)."""

from __future__ import annotations

import pytest

from services.codes.reservation import SmsReservations
from services.composition import Services
from services.errors import ServiceError
from tests.redis_round_trips import RoundTrips
from tests.services.codes import test_reservation_paths as scenarios
from tests.services.codes.test_reservation_paths import (
    BUDGET,
    clear,
    counter,
    request,
    setting,
    with_captcha,
)

paths = scenarios.paths  # the fixture: both paths on one standalone Redis


async def commandstats(services: Services) -> dict[str, int]:
    stats = await services.redis.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items()}


@pytest.mark.gen_test(timeout=60)
async def test_standalone_reserves_a_send_in_one_round_trip(paths, monkeypatch):
    services = paths.services
    trips = RoundTrips(monkeypatch)
    # The first send loads the scripts (EVALSHA, then SCRIPT LOAD and EVALSHA again).
    for warm_up in (paths.one_script, paths.stepwise):
        await clear(services)
        await with_captcha(services)
        verdict, send = await warm_up.reserve_send(request())
        await warm_up.give_back(send, verdict)
    counted = []
    for reservations in (paths.one_script, paths.stepwise):
        await clear(services)
        await with_captcha(services)
        stats_before = await commandstats(services)
        reserve_trips, (verdict, send) = await trips.of(reservations.reserve_send(request()))
        stats = await commandstats(services)
        give_back_trips, _ = await trips.of(reservations.give_back(send, verdict))
        counted.append((reserve_trips, give_back_trips))
        if reservations is paths.one_script:
            # Redis's own count: one script call, with the CAPTCHA's GETDEL inside it (Redis
            # counts a script's commands too).
            assert stats["cmdstat_evalsha"] - stats_before["cmdstat_evalsha"] == 1
            assert stats["cmdstat_getdel"] - stats_before.get("cmdstat_getdel", 0) == 1
    # Standalone: one round trip to reserve, one to give back. The separate steps: fraud,
    # CAPTCHA, limits (and the give-back of both in one pipeline).
    assert counted == [(1, 1), (3, 1)]


@pytest.mark.gen_test(timeout=60)
async def test_a_refused_send_is_one_round_trip_too(paths, monkeypatch):
    services = paths.services
    trips = RoundTrips(monkeypatch)
    for reservations, expected in ((paths.one_script, 1), (paths.stepwise, 5)):
        await setting(with_captcha, counter(BUDGET, 5))(services)  # warm-up: load the scripts
        await outcome_of(reservations)
        await clear(services)
        await setting(with_captcha, counter(BUDGET, 5))(services)  # budget_shed for newcomers
        # The separate steps: fraud, CAPTCHA, limits, the mobile's give-back, fraud's.
        assert await trips.of(outcome_of(reservations)) == (expected, "budget_shed")


async def outcome_of(reservations: SmsReservations) -> object:
    try:
        await reservations.reserve_send(request())
    except ServiceError as refused:
        return refused.data.get("reason")
    return "ok"
