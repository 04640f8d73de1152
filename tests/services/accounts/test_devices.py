"""DeviceService without HTTP, on real Redis (standalone and Cluster): 退出其他设备 ends the
other logins of every kind, sessions and API clients' refresh-token families alike, and
keeps the caller's own, whichever kind it is."""

from __future__ import annotations

import pytest

from services.errors import Ret
from services.store import keys
from tests.flows import PASSWORD_HASH, refusal

pytestmark = pytest.mark.gen_test(timeout=60)


async def new_user(services, fresh_mobile):
    return await services.users.create(mobile := fresh_mobile(), mobile, PASSWORD_HASH)


async def refreshes(services, refresh_token: str) -> bool:
    """Does this refresh token still give a new pair? (Using it up, as a client would.)"""
    try:
        await services.tokens.refresh(refresh_token)
    except Exception as refused:
        assert getattr(refused, "ret", None) == Ret.SESSIONERR, refused
        return False
    return True


async def test_a_refresh_token_from_before_ending_the_other_devices_no_longer_refreshes(
    make_services, redis_mode, fresh_mobile
):
    """The attack: a thief who logged in as an API client (a refresh token lives 30 days)
    must be logged out by the owner's 退出其他设备, as a thief's browser session is."""
    services = await make_services(**redis_mode)
    user = await new_user(services, fresh_mobile)
    own = await services.sessions.create(user)
    thief_browser = await services.sessions.create(user)
    thief_app = await services.tokens.issue(user)

    ended = await services.devices.end_others(own)
    assert not await refreshes(services, thief_app.refresh_token)
    assert await services.tokens.session(thief_app.access_token) is None
    assert await services.sessions.get(thief_browser) is None
    assert await services.sessions.get(own) is not None
    assert ended == 2
    assert not await services.redis.exists(keys.token_family_index_key(user.user_id))


async def test_an_api_client_ending_the_other_devices_keeps_its_own_login(
    make_services, redis_mode, fresh_mobile
):
    services = await make_services(**redis_mode)
    user = await new_user(services, fresh_mobile)
    browser = await services.sessions.create(user)
    mine, other = await services.tokens.issue(user), await services.tokens.issue(user)

    assert await services.devices.end_others(None, mine.access_token) == 2
    assert await services.sessions.get(browser) is None
    assert not await refreshes(services, other.refresh_token)
    assert await services.tokens.session(mine.access_token) is not None
    assert await refreshes(services, mine.refresh_token)


async def test_another_users_logins_are_never_reached(make_services, fresh_mobile):
    services = await make_services()
    alice, bob = await new_user(services, fresh_mobile), await new_user(services, fresh_mobile)
    alices = await services.sessions.create(alice)
    bobs_browser = await services.sessions.create(bob)
    bobs_app = await services.tokens.issue(bob)
    assert await services.devices.end_others(alices) == 0
    assert await services.sessions.get(bobs_browser) is not None
    assert await refreshes(services, bobs_app.refresh_token)


async def test_ending_one_device_by_its_handle_ends_that_session_only(make_services, fresh_mobile):
    """A handle names a session (the device list shows sessions); an API client's login is
    no session, so ending a device by handle revokes no family (docs/SECURITY.md)."""
    services = await make_services()
    user = await new_user(services, fresh_mobile)
    own, other = await services.sessions.create(user), await services.sessions.create(user)
    app = await services.tokens.issue(user)
    [handle] = [d.handle for d in await services.devices.devices(own) if not d.current]
    await services.devices.end(own, handle)
    assert await services.sessions.get(other) is None
    assert await refreshes(services, app.refresh_token)


async def test_a_revoked_or_forged_access_token_is_no_caller(make_services, fresh_mobile):
    services = await make_services()
    user = await new_user(services, fresh_mobile)
    browser = await services.sessions.create(user)
    pair = await services.tokens.issue(user)
    await services.tokens.revoke(pair.refresh_token)
    for token in (pair.access_token, "junk"):
        assert (await refusal(services.devices.end_others(None, token))).ret == Ret.SESSIONERR
        assert (await refusal(services.devices.devices(None, token))).ret == Ret.SESSIONERR
    assert await services.sessions.get(browser) is not None
