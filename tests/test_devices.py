"""The devices of an account (issue 23 item 6): GET /api/v1.0/user/sessions, DELETE one by
its handle, DELETE all but this one. Tests taking mode_client also run on a Redis Cluster."""

from __future__ import annotations

import json
import re

import pytest
import tornado.web

from services.store import keys
from tests.flows import PASSWORD, add_user, another_browser, logged_in_as, post

ROUTE = "/api/v1.0/user/sessions"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)


async def login_with(client, mobile: str, user_agent: str | None = None) -> None:
    headers = {"User-Agent": user_agent} if user_agent else {}
    body = {"mobile": mobile, "password": PASSWORD}
    assert (await post(client, "/api/v1.0/sessions", body, headers))["errno"] == "0"


async def listed(client) -> dict:
    return await client.json(ROUTE)


async def end(client, handle: str | None = None) -> dict:
    path = ROUTE if handle is None else f"{ROUTE}/{handle}"
    return await client.json(path, "DELETE", None, await client.xsrf_headers())


@pytest.mark.gen_test(timeout=60)
async def test_the_list_shows_each_device_and_never_a_secret(mode_client, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    phone = another_browser(client)
    await login_with(client, mobile, CHROME_WINDOWS)
    await login_with(phone, mobile, SAFARI_IPHONE)

    answer = await listed(client)
    assert answer["errno"] == "0"
    mine, other = answer["data"]["sessions"]
    assert (mine["device"], mine["current"]) == ("Chrome 120 · Windows", True)
    assert (other["device"], other["current"]) == ("Safari 17 · iOS", False)
    for each in (mine, other):
        assert re.fullmatch(r"[0-9a-f]{20}", each["id"])
        assert each["address"] == "127.0.0.1"
        assert isinstance(each["created"], int) and isinstance(each["last_seen"], int)
    # Nothing in the answer opens a session or names its Redis key.
    text = json.dumps(answer)
    secret = client.app.services.config.security.cookie_secret
    user_id = (await client.json("/api/v1.0/user"))["data"]["user_id"]
    for browser in (client, phone):
        session_id = tornado.web.decode_signed_value(secret, "session", browser.cookies["session"])
        assert session_id.decode().split(".", 1)[1] not in text
    index = await client.app.services.redis.hkeys(keys.session_index_key(user_id))
    assert len(index) == 2 and not any(digest in text for digest in index)
    # The other device sees itself as current.
    assert [s["current"] for s in (await listed(phone))["data"]["sessions"]] == [True, False]


@pytest.mark.gen_test(timeout=60)
async def test_end_one_device_by_its_id(mode_client, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    phone = another_browser(client)
    await login_with(client, mobile)
    await login_with(phone, mobile, SAFARI_IPHONE)
    mine, other = (await listed(client))["data"]["sessions"]

    assert await end(client, other["id"]) == {"errno": "0", "errmsg": "该设备已退出"}
    assert await logged_in_as(phone) is None
    assert await logged_in_as(client) == mobile
    assert [s["id"] for s in (await listed(client))["data"]["sessions"]] == [mine["id"]]
    # Again: gone. This one: not by this route. Not a handle: refused. Nothing else changes.
    assert await end(client, other["id"]) == {"errno": "4002", "errmsg": "该设备已退出"}
    assert await end(client, mine["id"]) == {"errno": "4103", "errmsg": "当前设备请使用“退出”"}
    for bad in ("xyz", "A" * 20, "0" * 21):
        assert await end(client, bad) == {"errno": "4103", "errmsg": "设备标识格式错误"}
    assert await logged_in_as(client) == mobile


@pytest.mark.gen_test(timeout=60)
async def test_another_users_session_is_never_reached(mode_client, fresh_mobile):
    client = mode_client
    alice, bob = fresh_mobile(), fresh_mobile()
    await add_user(client, alice)
    await add_user(client, bob)
    bobs = another_browser(client)
    await login_with(client, alice)
    await login_with(bobs, bob)
    [bob_session] = (await listed(bobs))["data"]["sessions"]
    assert await end(client, bob_session["id"]) == {"errno": "4002", "errmsg": "该设备已退出"}
    assert await logged_in_as(bobs) == bob
    assert [s["id"] for s in (await listed(bobs))["data"]["sessions"]] == [bob_session["id"]]


@pytest.mark.gen_test(timeout=60)
async def test_end_every_other_device(mode_client, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    others = [another_browser(client) for _ in range(3)]
    await login_with(client, mobile)
    for other in others:
        await login_with(other, mobile)
    assert await end(client) == {"errno": "0", "errmsg": "其他设备已退出", "data": {"ended": 3}}
    for other in others:
        assert await logged_in_as(other) is None
    assert await logged_in_as(client) == mobile
    assert len((await listed(client))["data"]["sessions"]) == 1
    assert (await end(client))["data"] == {"ended": 0}


@pytest.mark.gen_test(timeout=30)
async def test_not_logged_in(client):
    stranger = another_browser(client)
    refused = {"errno": "4101", "errmsg": "用户未登录"}
    assert await listed(stranger) == refused
    assert await end(stranger) == refused
    assert await end(stranger, "0" * 20) == refused


@pytest.mark.gen_test(timeout=60)
async def test_last_seen_is_written_at_most_once_a_minute(mode_client, fresh_mobile):
    client = mode_client
    sessions = client.app.services.sessions
    now = 1_800_000_000
    sessions.clock = lambda: now
    mobile = fresh_mobile()
    user = await add_user(client, mobile)
    await login_with(client, mobile)
    [key] = [
        keys.session_key(user.user_id, digest)
        for digest in await client.app.services.redis.hkeys(keys.session_index_key(user.user_id))
    ]
    redis = client.app.services.redis
    ttl = await redis.ttl(key)

    async def seen() -> int:
        return json.loads(await redis.get(key))["seen"]

    assert await seen() == now
    now += 59
    assert await logged_in_as(client) == mobile
    assert await seen() == now - 59  # less than a minute: not written
    now += 1
    assert await logged_in_as(client) == mobile
    assert await seen() == now
    assert (await listed(client))["data"]["sessions"][0]["last_seen"] == now
    assert 0 < await redis.ttl(key) <= ttl  # the expiry is kept, not extended


# --- API clients (refresh-token families) are other devices too ----------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def token_login(client, mobile: str) -> dict:
    """POST /api/v1.0/tokens as a native app (a client with no cookies)."""
    app = another_browser(client)
    answer = await app.json("/api/v1.0/tokens", "POST", {"mobile": mobile, "password": PASSWORD})
    assert answer["errno"] == "0", answer
    return answer


async def refresh(client, refresh_token: str) -> str:
    """POST /api/v1.0/tokens/refresh: its errno."""
    body = {"refresh_token": refresh_token}
    return (await another_browser(client).json("/api/v1.0/tokens/refresh", "POST", body))["errno"]


async def verified(client, access_token: str) -> int:
    return (await another_browser(client).fetch("/auth/verify", headers=bearer(access_token))).code


@pytest.mark.gen_test(timeout=60)
async def test_end_every_other_device_logs_out_api_clients_too(mode_client, fresh_mobile):
    """The attack: a refresh token obtained before 退出其他设备 must not refresh after it."""
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    await login_with(client, mobile)
    thief = await token_login(client, mobile)

    ended = await end(client)
    assert await refresh(client, thief["refresh_token"]) == "4101"
    assert await verified(client, thief["access_token"]) == 401
    assert await logged_in_as(client) == mobile
    assert ended == {"errno": "0", "errmsg": "其他设备已退出", "data": {"ended": 1}}


@pytest.mark.gen_test(timeout=60)
async def test_an_api_client_ends_every_other_device_and_keeps_its_own(mode_client, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    await login_with(client, mobile)
    mine, other = await token_login(client, mobile), await token_login(client, mobile)
    app = another_browser(client)  # no cookie, no XSRF token: the bearer token alone

    listed_by_app = await app.json(ROUTE, headers=bearer(mine["access_token"]))
    assert [s["current"] for s in listed_by_app["data"]["sessions"]] == [False]
    answer = await app.json(ROUTE, "DELETE", headers=bearer(mine["access_token"]))
    assert answer == {"errno": "0", "errmsg": "其他设备已退出", "data": {"ended": 2}}
    assert await logged_in_as(client) is None
    assert await refresh(client, other["refresh_token"]) == "4101"
    assert await verified(client, mine["access_token"]) == 200
    assert await refresh(client, mine["refresh_token"]) == "0"


@pytest.mark.gen_test(timeout=60)
async def test_an_api_client_ends_a_browser_session_by_its_id(client, fresh_mobile):
    """Ending one device by its id ends that session only: the API client's login stays."""
    mobile = fresh_mobile()
    await add_user(client, mobile)
    await login_with(client, mobile, SAFARI_IPHONE)
    mine = await token_login(client, mobile)
    app, auth = another_browser(client), bearer(mine["access_token"])
    [browser] = (await app.json(ROUTE, headers=auth))["data"]["sessions"]
    assert browser["device"] == "Safari 17 · iOS" and not browser["current"]
    path = f"{ROUTE}/{browser['id']}"
    assert await app.json(path, "DELETE", headers=auth) == {"errno": "0", "errmsg": "该设备已退出"}
    assert await logged_in_as(client) is None
    assert await verified(client, mine["access_token"]) == 200
    assert await refresh(client, mine["refresh_token"]) == "0"
