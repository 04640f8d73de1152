"""The operator console over HTTP (handlers/console.py, services/ops/): who is refused and how,
what an operator sees, the unblock and the lookup, each audited."""

from __future__ import annotations

import logging
import urllib.parse

import pytest

from services.store import keys
from tests.conftest import serving
from tests.flows import add_user, password_login, send_with_new_captcha

OPERATOR = "13800138001"
SOMEONE = "13800138002"
OPS = {"ops": {"operators": f"{OPERATOR}, 999999"}}


def form(client, fields: dict[str, str]) -> dict:
    return {
        "body": urllib.parse.urlencode({"_xsrf": client.cookies["_xsrf"], **fields}),
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }


async def logged_in(client, mobile: str):
    await add_user(client, mobile)
    assert (await password_login(client, mobile))["errno"] == "0"


async def unknown_url(client):
    return await client.fetch("/no-such-page")


@pytest.mark.gen_test
async def test_refusals_look_like_an_unknown_url(make_app, caplog):
    async with serving(await make_app(**OPS)) as client:
        not_found = await unknown_url(client)
        anonymous = await client.fetch("/ops")
        assert (anonymous.code, anonymous.body) == (404, not_found.body)
        await logged_in(client, SOMEONE)
        with caplog.at_level(logging.INFO, logger="smsreg.audit"):
            refused = await client.fetch("/ops")
        assert (refused.code, refused.body) == (404, not_found.body)
        assert "console refused to user" in caplog.text and "138****8002" in caplog.text
        assert SOMEONE not in caplog.text
    # An operator from an address outside ops.allow.
    outside = {"ops": {**OPS["ops"], "allow": "192.0.2.0/24"}}
    async with serving(await make_app(**outside)) as client:
        await logged_in(client, OPERATOR)
        refused = await client.fetch("/ops")
        assert (refused.code, refused.body) == (404, (await unknown_url(client)).body)


@pytest.mark.gen_test
async def test_an_operator_sees_the_console_and_unblocks_a_segment(make_app, caplog):
    app = await make_app(**OPS)
    redis = app.services.redis
    await redis.hset(keys.fraud_state_key("ip:203.0.113.7"), mapping={"state": "blocked"})
    async with serving(app) as client:
        await logged_in(client, OPERATOR)
        with caplog.at_level(logging.INFO, logger="smsreg.audit"):
            page = await client.fetch("/ops")
        assert page.code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        html = page.body.decode()
        assert html.count("<svg") == 6 and "ip:203.0.113.7" in html
        assert "console viewed by user" in caplog.text
        # Without the XSRF token: refused, nothing changes.
        plain = await client.fetch("/ops/segments", "POST", body="segment=ip%3A203.0.113.7")
        assert plain.code == 403
        assert await redis.exists(keys.fraud_state_key("ip:203.0.113.7"))
        with caplog.at_level(logging.INFO, logger="smsreg.audit"):
            done = await client.fetch(
                "/ops/segments", "POST", **form(client, {"segment": "ip:203.0.113.7"})
            )
        assert done.code == 303 and done.headers["Location"].startswith("/ops?unblocked=")
        assert not await redis.exists(keys.fraud_state_key("ip:203.0.113.7"))
        assert "unblocked fraud segment ip:203.0.113.7" in caplog.text
        assert "from 127.0.0.1" in caplog.text
        bad = await client.fetch("/ops/segments", "POST", **form(client, {"segment": "<x>"}))
        assert bad.code == 400 and "号段格式错误" in bad.body.decode()


@pytest.mark.gen_test
async def test_a_lookup_shows_the_sends_of_a_number_masked(make_app, caplog, fresh_mobile):
    app = await make_app(**OPS)
    async with serving(app) as client:
        mobile = fresh_mobile()
        answer = await send_with_new_captcha(client, mobile, "c1")
        assert answer["errno"] == "0", answer
        await logged_in(client, OPERATOR)
        with caplog.at_level(logging.INFO, logger="smsreg.audit"):
            page = await client.fetch("/ops/sends", "POST", **form(client, {"mobile": mobile}))
        html = page.body.decode()
        assert page.code == 200
        assert f"{mobile[:3]}****{mobile[-4:]}" in html and mobile not in html
        assert "ronglian" in html and "sent" in html
        assert mobile not in caplog.text and "looked up the sends of" in caplog.text
        bad = await client.fetch("/ops/sends", "POST", **form(client, {"mobile": "123"}))
        assert bad.code == 400 and "手机号格式错误" in bad.body.decode()
