"""The SMS-pumping simulation of bench/fraud.py, small: today (fraud guard off) vs now.

The real server (in process) with the simulator as its trusted proxy; attackers from many
IPv4 and IPv6 addresses solve every CAPTCHA and proof of work and never verify; legitimate
users (some behind the attackers' busiest /24s) register within a minute. `make bench-fraud`
runs the full-size version and writes docs/FRAUD.md.
"""

from __future__ import annotations

import pytest

from bench.fraud_sim import SimConfig, Simulation, server_overrides
from tests.conftest import reset_state, serving

BUDGET = 120
SMALL = SimConfig(
    real_seconds=15,
    attack_attempts=150,
    attacker_addresses=200,
    attacker_v4_nets=8,
    attacker_v6_nets=2,
    attacker_blocks=5,
    legit_users=20,
    legit_blocks=20,
    legit_share_behind_attacker_nat=0.1,
    concurrency=16,
)


async def simulate(make_app, redis_server, mariadb_server, sandbox, fraud: dict) -> dict:
    reset_state(redis_server, mariadb_server, sandbox)
    overrides = server_overrides(SMALL)
    app = await make_app(
        security={"trusted_proxies": "127.0.0.1"},
        limits={"sms_global_per_hour": BUDGET},
        sms=overrides["sms"],
        fraud=fraud,
    )
    async with serving(app) as client:
        simulation = Simulation(
            SMALL, client.base_url, app.services.redis, sandbox.base_url, BUDGET
        )
        result = await simulation.run()
    assert len(sandbox.inbox()) == result.attacker_sms + result.legit_sms
    return result


@pytest.mark.gen_test(timeout=120)
async def test_simulated_pumping_attack_today_vs_now(
    make_app, redis_server, mariadb_server, sandbox
):
    today = await simulate(make_app, redis_server, mariadb_server, sandbox, {"enabled": False})
    now = await simulate(
        make_app,
        redis_server,
        mariadb_server,
        sandbox,
        {
            "min_sends": 3,
            "elevated_sends": 3,
            "levels_per_send": 2,
            "budget_share_newcomer": 0.8,
            "budget_share_poor": 0.5,
            # The shipped proof of work: its price is what stops bots that solve it.
            "pow_cost": 50,
            "pow_max_counter": 2000,
        },
    )
    # Today the attackers spend the budget and then nobody can register. How many legitimate
    # users came before it ran out depends on how fast this machine lets the attackers go
    # (the schedule runs in real time: 0.8 of them on a CI machine at load 10, fewer when
    # quiet), so the test asks only that some came too late.
    assert today.attacker_sms >= 0.6 * BUDGET, today.summary()
    assert today.budget_left == 0
    assert today.legit_registered < today.legit_users, today.summary()
    # Now: nothing wider than an address is blocked, but every unconverted send past the
    # first three quadruples the price of the next one in its network and number block: the
    # bots' two threads of proof of work buy a few SMS per block, far fewer than today, and
    # every legitimate user registers.
    assert now.attacker_sms <= 0.5 * today.attacker_sms, (now.summary(), today.summary())
    assert now.legit_success >= 0.95, now.summary()
    assert now.budget_left > 0
