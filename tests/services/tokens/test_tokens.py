"""TokenService on real Redis (standalone and Cluster): rotation, reuse detection, revocation
with the sessions, and the rotation of signing keys (tools.keys' functions, a tmp keyring)."""

from __future__ import annotations

import asyncio
import logging

import jwt
import pytest

from services.errors import Ret
from services.store import keys
from services.tokens.keyring import SIGNING_LAG, add_key, rotate
from tests.flows import PASSWORD_HASH, refusal

pytestmark = pytest.mark.gen_test(timeout=60)


async def new_user(services, fresh_mobile):
    return await services.users.create(mobile := fresh_mobile(), mobile, PASSWORD_HASH)


async def test_refresh_gives_a_new_pair_and_uses_the_old_token_up(
    make_services, redis_mode, fresh_mobile
):
    services = await make_services(**redis_mode)
    user = await new_user(services, fresh_mobile)
    first = await services.tokens.issue(user)
    second = await services.tokens.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    claims = services.tokens.verify(second.access_token)
    assert claims is not None and claims.user_id == user.user_id
    assert (await services.tokens.session(second.access_token))["name"] == user.name
    stored = await services.redis.hgetall(keys.token_family_key(user.user_id, claims.family_id))
    assert first.refresh_token not in str(stored) and second.refresh_token not in str(stored)


async def test_twenty_concurrent_refreshes_give_exactly_one_pair(
    make_services, redis_mode, fresh_mobile
):
    services = await make_services(**redis_mode)
    pair = await services.tokens.issue(await new_user(services, fresh_mobile))
    results = await asyncio.gather(
        *(services.tokens.refresh(pair.refresh_token) for _ in range(20)), return_exceptions=True
    )
    pairs = [result for result in results if not isinstance(result, Exception)]
    assert len(pairs) == 1
    assert {result.ret for result in results if isinstance(result, Exception)} == {Ret.SESSIONERR}
    # The 19 others presented a rotated token: reuse, so the family is revoked (RFC 9700 strict).
    assert (await refusal(services.tokens.refresh(pairs[0].refresh_token))).ret == Ret.SESSIONERR
    assert await services.tokens.session(pairs[0].access_token) is None


async def test_reusing_a_rotated_token_revokes_the_family_and_is_logged(
    make_services, redis_mode, fresh_mobile, caplog
):
    services = await make_services(**redis_mode)
    user = await new_user(services, fresh_mobile)
    first = await services.tokens.issue(user)
    other_login = await services.tokens.issue(user)
    newest = await services.tokens.refresh(first.refresh_token)
    with caplog.at_level(logging.WARNING, logger="services.tokens.service"):
        assert (await refusal(services.tokens.refresh(first.refresh_token))).ret == Ret.SESSIONERR
    assert "refresh token reused" in caplog.text
    assert first.refresh_token not in caplog.text and newest.refresh_token not in caplog.text
    assert (await refusal(services.tokens.refresh(newest.refresh_token))).ret == Ret.SESSIONERR
    assert await services.tokens.session(newest.access_token) is None
    # Another login of the same user is another family: untouched.
    assert await services.tokens.session(other_login.access_token) is not None
    assert await services.tokens.refresh(other_login.refresh_token)


async def test_a_token_never_issued_changes_nothing(make_services, fresh_mobile):
    services = await make_services()
    pair = await services.tokens.issue(await new_user(services, fresh_mobile))
    user_id, family, _ = pair.refresh_token.split(".")
    forged = f"{user_id}.{family}.{'A' * 43}"
    for bad in (forged, "", None, 42, "x.y.z", pair.refresh_token + "x"):
        assert (await refusal(services.tokens.refresh(bad))).ret == Ret.SESSIONERR
    assert await services.tokens.refresh(pair.refresh_token)


async def test_revoking_ends_the_family(make_services, fresh_mobile):
    services = await make_services()
    pair = await services.tokens.issue(await new_user(services, fresh_mobile))
    await services.tokens.revoke("not a token")
    await services.tokens.revoke(pair.refresh_token)
    assert await services.tokens.session(pair.access_token) is None
    assert (await refusal(services.tokens.refresh(pair.refresh_token))).ret == Ret.SESSIONERR


async def test_a_password_change_revokes_every_family_with_the_sessions(
    make_services, redis_mode, fresh_mobile
):
    services = await make_services(**redis_mode)
    user = await new_user(services, fresh_mobile)
    pairs = [await services.tokens.issue(user) for _ in range(3)]
    session_id = await services.sessions.create(user)
    await services.accounts.change_password(user.user_id, "another-pass-1")
    assert await services.sessions.get(session_id) is None
    for pair in pairs:
        assert await services.tokens.session(pair.access_token) is None
        assert (await refusal(services.tokens.refresh(pair.refresh_token))).ret == Ret.SESSIONERR
    assert not await services.redis.exists(keys.token_family_index_key(user.user_id))


async def test_an_expired_access_token_is_refused(make_services, fresh_mobile):
    services = await make_services(tokens={"access_ttl": 60})
    pair = await services.tokens.issue(await new_user(services, fresh_mobile))
    now = services.tokens.clock()
    services.tokens.clock = lambda: now + 59
    assert services.tokens.verify(pair.access_token) is not None
    services.tokens.clock = lambda: now + 61
    assert services.tokens.verify(pair.access_token) is None


async def test_rotated_keys_verify_until_their_tokens_expire(make_services, fresh_mobile, tmp_path):
    ring = tmp_path / "keys" / "keyring.json"
    old_kid = add_key(ring)["kid"]
    services = await make_services(tokens={"keyring": str(ring)})
    tokens = services.tokens
    user = await new_user(services, fresh_mobile)
    old = await tokens.issue(user)
    assert jwt.get_unverified_header(old.access_token)["kid"] == old_kid

    next_kid = add_key(ring)["kid"]  # published, not yet signing
    assert await tokens.reload_keyring()
    assert {key["kid"] for key in tokens.jwks()["keys"]} == {old_kid, next_kid}
    still_old = await tokens.issue(user)
    assert jwt.get_unverified_header(still_old.access_token)["kid"] == old_kid

    with pytest.raises(Exception, match="published for"):
        rotate(ring, access_ttl=900, publish_ahead=600)
    assert rotate(ring, access_ttl=900, publish_ahead=0) == (next_kid, old_kid, [])
    assert await tokens.reload_keyring()
    new = await tokens.issue(user)
    assert jwt.get_unverified_header(new.access_token)["kid"] == next_kid
    assert {key["kid"] for key in tokens.jwks()["keys"]} == {old_kid, next_kid}
    assert tokens.verify(old.access_token) is not None  # the old key still verifies
    retired_at = tokens.clock()
    tokens.clock = lambda: retired_at + 901  # ... until its tokens have expired
    assert tokens.verify(old.access_token) is None

    # A later rotation drops the retired key once its tokens have all expired.
    third_kid = add_key(ring)["kid"]
    later = retired_at + 900 + SIGNING_LAG + 1
    assert rotate(ring, access_ttl=900, publish_ahead=0, now=later) == (
        third_kid,
        next_kid,
        [old_kid],
    )
    assert await tokens.reload_keyring()
    assert {key["kid"] for key in tokens.jwks()["keys"]} == {next_kid, third_kid}


async def test_a_broken_keyring_file_keeps_the_loaded_one(make_services, tmp_path):
    ring = tmp_path / "keyring.json"
    kid = add_key(ring)["kid"]
    services = await make_services(tokens={"keyring": str(ring)})
    ring.unlink()
    ring.write_text("{not json", encoding="utf-8")
    assert not await services.tokens.reload_keyring()
    assert services.tokens.keyring.active.kid == kid
