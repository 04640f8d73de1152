"""The whole flow, the limits and the races on a real 3-master Redis Cluster.

Every multi-key Lua step keys on one mobile (or one IP) through a hash tag, so it runs on the
one node owning that slot; these tests re-run the standalone suites' flows with
`redis.mode: cluster` to prove it, and check where the keys really land.
"""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster

from services import keys
from tests.cluster_helpers import LocalRedisCluster
from tests.conftest import serving
from tests.test_accounts import (
    PASSWORD,
    check_concurrent_registrations_create_one_user,
    check_concurrent_wrong_codes_counted_five_times,
    post,
    register,
    request_code,
    user_rows,
)
from tests.test_audio_captcha import check_audio_costs_more_than_an_image
from tests.test_fraud import (
    FRAUD,
    LIFTED_CAPTCHA_LIMIT,
    PROXY,
    check_breaker,
    check_converting_segment_stays_normal,
    check_elevated_cap_holds_under_a_race,
    check_operator_lists_and_unblocks,
)
from tests.test_limits import (
    assert_nothing_stored,
    assert_refusal,
    check_ip_hourly_limit,
    pass_resend_interval,
    send,
)
from tests.test_login_throttle import (
    check_distributed_guessing_needs_a_captcha,
    check_password_change_ends_every_session,
)
from tests.test_phone_account import (
    check_change_mobile,
    check_concurrent_changes_one_wins,
    check_concurrent_resets_one_wins,
    check_one_code_logs_in_once,
    check_purposes_share_guard_and_bind_codes,
    check_reset_ends_every_session,
)
from tests.test_verify import (
    check_one_captcha_passes_once,
    check_one_sms_for_concurrent_requests,
    send_with_new_captcha,
)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def make_cluster_app(make_app, redis_cluster):
    """make_app on the cluster: every node flushed (clean_state, via make_app, does the rest)."""
    redis_cluster.flushall()

    async def build(**changes):
        redis = {"mode": "cluster", "cluster_nodes": redis_cluster.startup_nodes}
        return await make_app(redis=redis, **changes)

    return build


def mobile_keys(mobile: str) -> list[str]:
    return [
        keys.sms_guard_key(mobile),
        keys.sms_code_key(mobile),
        keys.sms_mobile_hourly_key(mobile),
        keys.sms_mobile_daily_key(mobile),
    ]


# --- the whole journey -------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_journey_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    """CAPTCHA → SMS → register → session → logout → login → session → logout."""
    app = await make_cluster_app()
    async with serving(app) as client:
        assert isinstance(client.app.services.redis, RedisCluster)
        mobile = fresh_mobile()
        code = await request_code(client, sandbox, mobile)
        assert await register(client, mobile, code) == {"errno": "0", "errmsg": "注册成功"}
        assert (await client.json("/api/v1.0/session"))["data"] == {"name": mobile}
        assert (await client.json("/api/v1.0/user"))["data"]["mobile"] == mobile
        logout = await client.json("/api/v1.0/session", "DELETE", None, await client.xsrf_headers())
        assert logout["errno"] == "0"
        assert (await client.json("/api/v1.0/session"))["errno"] == "4101"
        login = {"mobile": mobile, "password": PASSWORD}
        assert await post(client, "/api/v1.0/sessions", login) == {
            "errno": "0",
            "errmsg": "登录成功",
        }
        assert (await client.json("/api/v1.0/session"))["data"] == {"name": mobile}
        logout = await client.json("/api/v1.0/session", "DELETE", None, await client.xsrf_headers())
        assert logout["errno"] == "0"
        assert (await client.json("/api/v1.0/session"))["errno"] == "4101"
        assert await user_rows(client, mobile) == 1
        assert not await client.app.services.redis.exists(keys.sms_code_key(mobile))


# --- races -------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_requests_for_one_mobile_send_one_sms_on_cluster(
    make_cluster_app, sandbox, fresh_mobile
):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_one_sms_for_concurrent_requests(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_uses_of_one_captcha_pass_once_on_cluster(
    make_cluster_app, sandbox, fresh_mobile
):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_one_captcha_passes_once(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_twenty_concurrent_registrations_create_one_user_on_cluster(
    make_cluster_app, sandbox, fresh_mobile
):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_concurrent_registrations_create_one_user(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_wrong_codes_cannot_exceed_attempt_limit_on_cluster(
    make_cluster_app, sandbox, fresh_mobile
):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_concurrent_wrong_codes_counted_five_times(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_wrong_code_five_times_destroys_it_on_cluster(
    make_cluster_app, sandbox, fresh_mobile
):
    app = await make_cluster_app()
    async with serving(app) as client:
        mobile = fresh_mobile()
        code = await request_code(client, sandbox, mobile)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        answers = [await register(client, mobile, wrong) for _ in range(5)]
        assert [a["errno"] for a in answers] == ["4004"] * 5
        assert answers[4]["errmsg"] == "短信验证码错误次数过多，请重新获取"
        assert not await client.app.services.redis.exists(keys.sms_code_key(mobile))
        assert (await register(client, mobile, code))["errno"] == "4002"
        assert await user_rows(client, mobile) == 0


# --- limits ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_mobile_hourly_limit_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    app = await make_cluster_app()
    async with serving(app) as client:
        mobile = fresh_mobile()
        for i in range(5):
            await pass_resend_interval(client, mobile)
            _, body = await send(client, mobile, f"h-{i}")
            assert body["errno"] == "0", body
            sandbox.clear()  # the sandbox's own per-mobile rule is not what this is about
        await pass_resend_interval(client, mobile)
        redis = client.app.services.redis
        last_code = await redis.hgetall(keys.sms_code_key(mobile))
        response, body = await send(client, mobile, "h-5")
        assert_refusal(response, body, "mobile_hourly", 3500, 3600)
        assert await redis.hgetall(keys.sms_code_key(mobile)) == last_code
        assert not await redis.exists(keys.sms_guard_key(mobile))
        assert await redis.get(keys.sms_mobile_hourly_key(mobile)) == "5"
        assert sandbox.inbox(mobile) == []


@pytest.mark.gen_test(timeout=60)
async def test_client_ip_hourly_limit_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_ip_hourly_limit(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_audio_captcha_cost_on_cluster(make_cluster_app):
    app = await make_cluster_app(limits={"captcha_per_ip_minute": 5})
    async with serving(app) as client:
        await check_audio_costs_more_than_an_image(client)


@pytest.mark.gen_test(timeout=60)
async def test_global_budget_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    app = await make_cluster_app(limits={"sms_global_per_hour": 3})
    async with serving(app) as client:
        for i in range(3):
            assert (await send(client, fresh_mobile(), f"g-{i}"))[1]["errno"] == "0"
        mobile = fresh_mobile()
        response, body = await send(client, mobile, "g-3")
        assert_refusal(response, body, "global_hourly", 3500, 3600)
        await assert_nothing_stored(client, mobile)
        assert await client.app.services.redis.get(keys.sms_global_hourly_key()) == "3"
        assert len(sandbox.inbox()) == 3


# --- where the keys live -----------------------------------------------------------------


def slot_owners(cluster: LocalRedisCluster) -> list[tuple[int, int, int]]:
    """(first slot, last slot, port of the master) for every slot range, from CLUSTER SLOTS."""
    with cluster.node_client(cluster.ports[0]) as node:
        return [
            (int(first), int(last), int(master[1]))
            for first, last, master, *_ in node.execute_command("CLUSTER SLOTS")
        ]


def owner_of(slot: int, owners: list[tuple[int, int, int]]) -> int:
    [port] = [port for first, last, port in owners if first <= slot <= last]
    return port


@pytest.mark.gen_test(timeout=60)
async def test_keys_of_one_mobile_share_a_slot_and_mobiles_spread_over_nodes(
    make_cluster_app, redis_cluster, sandbox, fresh_mobile
):
    owners = slot_owners(redis_cluster)
    assert {port for *_, port in owners} == set(redis_cluster.ports)  # three masters serve
    # One mobile per master: draw fresh mobiles until every node owns the slot of one.
    by_node: dict[int, str] = {}
    while len(by_node) < len(redis_cluster.ports):
        mobile = fresh_mobile()
        slots = {redis_cluster.keyslot(key) for key in mobile_keys(mobile)}
        assert len(slots) == 1, (mobile, slots)  # CLUSTER KEYSLOT: one slot per mobile
        by_node.setdefault(owner_of(slots.pop(), owners), mobile)

    app = await make_cluster_app()
    async with serving(app) as client:
        for i, mobile in enumerate(by_node.values()):
            assert (await send_with_new_captcha(client, mobile, f"slot-{i}"))["errno"] == "0"

    found = redis_cluster.keys_by_port("sms:{*")
    for port, mobile in by_node.items():
        # All four keys of the mobile (guard, code, hourly, daily) live on its one node ...
        assert set(mobile_keys(mobile)) <= found[port]
        # ... and on no other.
        for other_port, other_keys in found.items():
            if other_port != port:
                assert not set(mobile_keys(mobile)) & other_keys
    assert all(found[port] for port in redis_cluster.ports)  # the mobiles spread over 3 nodes


# --- login throttle and sessions ---------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_login_throttle_on_cluster(make_cluster_app, fresh_mobile):
    app = await make_cluster_app(
        security={"trusted_proxies": "127.0.0.0/8"}, accounts={"login_captcha_after": 3}
    )
    await check_distributed_guessing_needs_a_captcha(app, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_password_change_ends_every_session_on_cluster(make_cluster_app, fresh_mobile):
    await check_password_change_ends_every_session(await make_cluster_app(), fresh_mobile)


# --- fraud segments (three segments per send, three slots) --------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_fraud_breaker_on_cluster(make_cluster_app, sandbox, caplog):
    app = await make_cluster_app(fraud=FRAUD, security=PROXY, limits=LIFTED_CAPTCHA_LIMIT)
    async with serving(app) as client:
        await check_breaker(client, sandbox, caplog)
        await check_converting_segment_stays_normal(client, sandbox)


@pytest.mark.gen_test(timeout=120)
async def test_hundred_concurrent_requests_do_not_overshoot_an_elevated_cap_on_cluster(
    make_cluster_app, sandbox
):
    app = await make_cluster_app(fraud=FRAUD, security=PROXY, limits=LIFTED_CAPTCHA_LIMIT)
    async with serving(app) as client:
        await check_elevated_cap_holds_under_a_race(client, sandbox)


@pytest.mark.gen_test(timeout=90)
async def test_fraud_operator_command_on_cluster(make_cluster_app, sandbox, caplog):
    app = await make_cluster_app(fraud=FRAUD, security=PROXY, limits=LIFTED_CAPTCHA_LIMIT)
    async with serving(app) as client:
        await check_operator_lists_and_unblocks(client, sandbox, caplog)


# --- the phone account: SMS login, reset, change of mobile (tests/test_phone_account.py) ---


@pytest.mark.gen_test(timeout=60)
async def test_sms_login_with_one_code_from_two_tabs_on_cluster(
    make_cluster_app, sandbox, fresh_mobile
):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_one_code_logs_in_once(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_reset_ends_every_session_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_reset_ends_every_session(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_resets_one_wins_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_concurrent_resets_one_wins(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_change_mobile_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_change_mobile(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_changes_to_one_number_on_cluster(make_cluster_app, sandbox, fresh_mobile):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_concurrent_changes_one_wins(client, sandbox, fresh_mobile)


@pytest.mark.gen_test(timeout=60)
async def test_purposes_share_one_guard_and_bind_codes_on_cluster(
    make_cluster_app, sandbox, fresh_mobile
):
    app = await make_cluster_app()
    async with serving(app) as client:
        await check_purposes_share_guard_and_bind_codes(client, sandbox, fresh_mobile)
