"""GET /auth/verify in process (tests/nginx/test_forward_auth.py runs it behind real nginx):
a live session cookie passes, nothing else does, and the check notes where a session is used
at most once a minute, as every signed-in request does."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
import tornado.web

from services.store import keys
from tests.conftest import serving
from tests.flows import add_user, another_browser, password_login

DAY = 86400
NAME = "张三 & co/1"


@pytest.mark.gen_test(timeout=60)
async def test_a_live_session_cookie_passes_and_nothing_else_does(client, fresh_mobile):
    user = await add_user(client, mobile := fresh_mobile(), NAME)
    assert (await password_login(client, mobile))["errno"] == "0"
    for method in ("GET", "HEAD"):
        passed = await client.fetch("/auth/verify", method)
        assert passed.code == 200, method
        assert passed.headers["X-User-Id"] == str(user.user_id)
        assert passed.headers["X-User-Name"] == urllib.parse.quote(NAME, safe="")
        assert passed.headers["Cache-Control"] == "no-store" and "Etag" not in passed.headers

    good = client.cookies["session"]
    secret = client.app.services.config.security.cookie_secret
    session_id = tornado.web.decode_signed_value(secret, "session", good).decode()
    old = time.time() - 32 * DAY
    refused = {
        "no cookie": {},
        "tampered": {"Cookie": f"session={good[:-1]}{'0' if good[-1] != '0' else '1'}"},
        "another secret": {
            "Cookie": "session="
            + tornado.web.create_signed_value(
                "another-secret-of-some-length-0123456789", "session", session_id
            ).decode()
        },
        "signed 32 days ago": {
            "Cookie": "session="
            + tornado.web.create_signed_value(
                secret, "session", session_id, clock=lambda: old
            ).decode()
        },
        "a bad bearer token beside it": {"Cookie": f"session={good}", "Authorization": "Bearer x"},
    }
    for what, headers in refused.items():
        answer = await another_browser(client).fetch("/auth/verify", headers=headers)
        assert answer.code == 401, what
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="smsreg"'
        assert "X-User-Id" not in answer.headers

    # The process remembers that this cookie verified; it still ages as its signature does.
    remembered = client.app.verified_cookies
    remembered.clock = lambda: time.time() + 32 * DAY
    assert (await client.fetch("/auth/verify")).code == 401
    remembered.clock = time.time
    assert (await client.fetch("/auth/verify")).code == 200
    # A session that ended: the cookie verifies, the session is gone.
    headers = await client.xsrf_headers()
    assert (await client.json("/api/v1.0/session", "DELETE", None, headers))["errno"] == "0"
    gone = await another_browser(client).fetch(
        "/auth/verify", headers={"Cookie": f"session={good}"}
    )
    assert gone.code == 401


@pytest.mark.gen_test(timeout=60)
async def test_the_check_notes_the_address_behind_the_proxy_at_most_once_a_minute(
    make_app, fresh_mobile
):
    app = await make_app(security={"trusted_proxies": "127.0.0.1"})
    async with serving(app) as client:
        sessions, redis = app.services.sessions, app.services.redis
        now = 1_800_000_000
        sessions.clock = lambda: now
        user = await add_user(client, mobile := fresh_mobile())
        assert (await password_login(client, mobile))["errno"] == "0"
        [digest] = await redis.hkeys(keys.session_index_key(user.user_id))

        async def noted() -> tuple[int, str]:
            session = json.loads(await redis.get(keys.session_key(user.user_id, digest)))
            return session["seen"], session["address"]

        async def verify(forwarded_for: str) -> None:
            headers = {"X-Forwarded-For": forwarded_for}
            assert (await client.fetch("/auth/verify", headers=headers)).code == 200

        assert await noted() == (now, "127.0.0.1")
        now += 59
        await verify("203.0.113.9")
        assert await noted() == (now - 59, "127.0.0.1")  # less than a minute: nothing written
        now += 1
        await verify("203.0.113.9")
        assert await noted() == (now, "203.0.113.9")
        now += 30
        await verify("198.51.100.1")
        assert await noted() == (now - 30, "203.0.113.9")
        now += 30
        await verify("198.51.100.1")
        assert await noted() == (now, "198.51.100.1")
