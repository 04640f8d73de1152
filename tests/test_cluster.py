"""What only a Redis Cluster has: the whole journey on one, and where the keys land.

Every multi-key Lua step keys on one mobile (or one IP, user, segment) through a hash tag, so
it runs on the one node owning that slot. The flow, race and limit tests run on both Redis
modes where they are written (the tests taking mode_client, make_mode_app or redis_mode, see
tests/conftest.py); this module checks the cluster itself.
"""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster

from services.store import keys
from tests.cluster_helpers import LocalRedisCluster
from tests.conftest import serving
from tests.flows import PASSWORD, post, register, request_code, send_with_new_captcha, user_rows


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
