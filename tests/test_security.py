"""Attacks from the security review (issue 10), each written before its defence."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from passlib.hash import django_pbkdf2_sha256

from services.config import ConfigError, load_config
from services.store import keys
from tests.conftest import ROOT, serving
from tests.flows import MeiduoClient, run_server
from tests.users_sql import insert_user

PASSWORD = "abc12345xyz"


async def raw_request(port: int, request: bytes) -> bytes:
    """One request on its own connection (Connection: close); the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


def port_of(client) -> int:
    return int(client.base_url.rsplit(":", 1)[1])


# --- 4. open redirect on meiduo login ----------------------------------------------------


async def meiduo_user(client, fresh_mobile) -> tuple[MeiduoClient, str]:
    """A meiduo user (inserted directly), and a client holding the CSRF cookie."""
    username = f"user_{fresh_mobile()[-6:]}"
    password_hash = django_pbkdf2_sha256.using(rounds=1000).hash(PASSWORD)  # meiduo's own format
    await insert_user(client.app.services, fresh_mobile(), username, password_hash)
    await client.fetch("/image_codes/00000000-0000-0000-0000-000000000000/")
    return MeiduoClient(client), username


@pytest.mark.parametrize(
    ("next_param", "location"),
    [
        ("/%5Cevil.example/", "/"),  # /\evil.example/: browsers read it as //evil.example/
        ("/a%0Bb", "/"),  # a control character: was a 500 after the session cookie was set
        ("%2F%2Fevil.example", "/"),
        ("/%09/evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/orders/?page=2", "/orders/?page=2"),  # a same-site path survives
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_meiduo_login_next_only_same_site_paths(client, fresh_mobile, next_param, location):
    meiduo, username = await meiduo_user(client, fresh_mobile)
    response = await meiduo.post_form(
        f"/login/?next={next_param}", {"username": username, "password": PASSWORD}
    )
    assert response.code == 302, response.body
    assert response.headers["Location"] == location


# --- 5. /metrics: closed label sets, loopback only ---------------------------------------


def sample_names(text: str) -> list[str]:
    """The metric lines without their values: the series /metrics holds."""
    return sorted(line.rsplit(" ", 1)[0] for line in text.splitlines() if line[:1] != "#")


@pytest.mark.gen_test(timeout=60)
async def test_junk_methods_do_not_grow_metrics(client):
    port = port_of(client)
    junk_request = "{} /api/v1.0/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    # The first junk request may add the one OTHER series; later ones must add nothing.
    await raw_request(port, junk_request.format("J" * 8000).encode())
    await client.fetch("/metrics")  # so that /metrics' own series exist before measuring
    before = (await client.fetch("/metrics")).body.decode()
    for i in range(8):
        answer = await raw_request(port, junk_request.format(f"X{i}" * 1000).encode())
        assert answer.startswith(b"HTTP/1.1 405")
    after = (await client.fetch("/metrics")).body.decode()
    assert sample_names(after) == sample_names(before)
    assert len(after) - len(before) < 200  # counters and sums gain digits, nothing more
    assert 'method="OTHER"' in after


@pytest.mark.gen_test(timeout=30)
async def test_unknown_routes_share_one_label(client):
    for i in range(5):
        assert (await client.fetch(f"/no/such/route/{i}")).code == 404
    text = (await client.fetch("/metrics")).body.decode()
    routes = set(re.findall(r'smsreg_requests_total\{[^}]*route="([^"]*)"', text))
    assert "not_found" in routes
    assert not any("no/such" in route for route in routes)


@pytest.mark.gen_test(timeout=30)
async def test_metrics_only_for_the_allow_list(make_app):
    app = await make_app(security={"trusted_proxies": "127.0.0.0/8"})
    async with serving(app) as client:
        assert (await client.fetch("/metrics")).code == 200  # loopback: the default allow-list
        outside = {"X-Forwarded-For": "203.0.113.9"}  # the public, through the trusted proxy
        response = await client.fetch("/metrics", headers=outside)
        assert response.code == 404
        assert b"smsreg_" not in response.body
    app = await make_app(
        security={"trusted_proxies": "127.0.0.0/8", "metrics_allow": "203.0.113.0/24"}
    )
    async with serving(app) as client:
        assert (await client.fetch("/metrics", headers=outside)).code == 200
        assert (await client.fetch("/metrics")).code == 404  # loopback is not in this list


# --- 6. the "is it registered?" routes are limited per address ---------------------------


@pytest.mark.gen_test(timeout=60)
async def test_count_routes_limited_per_address(make_app, fresh_mobile):
    app = await make_app(security={"trusted_proxies": "127.0.0.0/8"})
    async with serving(app) as client:
        meiduo = MeiduoClient(client)
        prober = {"X-Forwarded-For": "203.0.113.50"}
        for i in range(30):  # the default: 30 per minute, mobiles and usernames together
            path = f"/usernames/probe{i:03d}/count/"
            if i % 2:
                path = f"/mobiles/{fresh_mobile()}/count/"
            response = await client.fetch(path, headers=prober)
            assert json.loads(response.body)["code"] == "0"
        for path in (f"/mobiles/{fresh_mobile()}/count/", "/usernames/probe999/count/"):
            response = await client.fetch(path, headers=prober)
            body = json.loads(response.body)
            assert body["code"] == "4002" and "count" not in body
            assert 1 <= body["retry_after"] <= 60
            assert response.headers["Retry-After"] == str(body["retry_after"])
        # A person on another address still gets the as-you-type check.
        person = {"X-Forwarded-For": "198.51.100.20"}
        answer = await client.fetch(f"/mobiles/{fresh_mobile()}/count/", headers=person)
        assert json.loads(answer.body) == {"code": "0", "errmsg": "OK", "count": 0}
        assert (await meiduo.get_json("/usernames/ab/count/"))["code"] == "4004"


# --- 7. hostile JSON: deep nesting and lone surrogates -----------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"mobile": "13800000000", "password": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"mobile": "13800000000", "password": "\\ud800abcdef"}',
        b'{"mobile": "13800000000", "password": "abc\\udfffdef"}',
    ],
    ids=["nested-top", "nested-password", "lone-high-surrogate", "lone-low-surrogate"],
)
@pytest.mark.gen_test(timeout=30)
async def test_hostile_json_is_paramerr_not_500(client, body):
    headers = {**await client.xsrf_headers(), "Content-Type": "application/json"}
    for path in ("/api/v1.0/sessions", "/api/v1.0/users", "/passport/login", "/api/v1.0/sms_codes"):
        response = await client.fetch(path, "POST", body, headers)
        assert response.code == 200, (path, response.code)
        assert json.loads(response.body)["errno"] == "4103", path


# --- 10. production refuses sandbox settings ---------------------------------------------

PRODUCTION_ENV = {
    "SMSREG_MODE": "production",
    "SMSREG_SECURITY_COOKIE_SECRET": "a" * 40,
    "SMSREG_SECURITY_CODE_HMAC_KEY": "b" * 40,
    "SMSREG_SECURITY_SECURE_COOKIES": "true",
    "SMSREG_MYSQL_PASSWORD": "real-database-password",
    "SMSREG_RONGLIAN_BASE_URL": "https://app.cloopen.com:8883",
    "SMSREG_RONGLIAN_ACCOUNT_SID": "8a216da8000000000000000000000001",
    "SMSREG_RONGLIAN_AUTH_TOKEN": "f" * 32,
    "SMSREG_RONGLIAN_APP_ID": "8a216da8000000000000000000000002",
    "SMSREG_ALIYUN_BASE_URL": "https://dysmsapi.aliyuncs.com",
    "SMSREG_ALIYUN_ACCESS_KEY_ID": "LTAI5tProductionKey000001",
    "SMSREG_ALIYUN_ACCESS_KEY_SECRET": "p" * 30,
    "SMSREG_RECEIPTS_CALLBACK_TOKEN": "c" * 40,
    # A keyring made by `python -m tools.keys new` for these tests only (its key signs nothing).
    "SMSREG_TOKENS_KEYRING": str(ROOT / "tests" / "fixtures" / "tokens" / "keyring.json"),
}


def test_production_settings_load():
    config = load_config(ROOT / "config.yml", environ=PRODUCTION_ENV)
    assert config.mode == "production"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("SMSREG_RONGLIAN_BASE_URL", "http://127.0.0.1:8883", "ronglian.base_url"),
        ("SMSREG_RONGLIAN_BASE_URL", "https://127.0.0.1:8883", "ronglian.base_url"),
        ("SMSREG_RONGLIAN_BASE_URL", "https://localhost:8883", "ronglian.base_url"),
        ("SMSREG_RONGLIAN_BASE_URL", "https://[::1]:8883", "ronglian.base_url"),
        ("SMSREG_RONGLIAN_BASE_URL", "http://app.cloopen.com:8883", "ronglian.base_url"),
        ("SMSREG_RONGLIAN_APP_ID", "8aaf0708app0000000000000000000ab", "ronglian.app_id"),
        ("SMSREG_SECURITY_SECURE_COOKIES", "false", "security.secure_cookies"),
        ("SMSREG_TOKENS_KEYRING", "", "tokens.keyring"),
        ("SMSREG_TOKENS_KEYRING", "/nonexistent/keyring.json", "tokens.keyring"),
    ],
)
def test_production_refuses_sandbox_settings(name, value, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(ROOT / "config.yml", environ={**PRODUCTION_ENV, name: value})


def test_production_with_sandbox_url_exits_2_with_one_line():
    import os

    env = {**os.environ, **PRODUCTION_ENV, "SMSREG_RONGLIAN_BASE_URL": "http://127.0.0.1:8883"}
    result = run_server(env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "ronglian.base_url" in result.stderr


# --- 11. a live CAPTCHA id belongs to the browser that asked for it ----------------------


@pytest.mark.gen_test(timeout=30)
async def test_reissuing_a_live_captcha_id_cannot_change_its_answer(make_app, fresh_mobile):
    app = await make_app()
    async with serving(app) as owner, serving(app) as attacker:
        text = await owner.new_captcha("victim-id")
        for path in (
            "/api/v1.0/image_codes/victim-id",
            "/image_codes/victim-id/",
            "/passport/image_code?imageCodeId=victim-id",
        ):
            response = await attacker.fetch(path)
            assert response.headers["Content-Type"].startswith("application/json"), path
            assert await app.services.redis.get(keys.captcha_key("victim-id")) == text
        # The owner's answer still holds; the owner may still ask for a new image of its id.
        assert (await owner.send_sms(fresh_mobile(), text, "victim-id"))["errno"] == "0"
        first = await owner.new_captcha("owner-id")
        texts = {first} | {await owner.new_captcha("owner-id") for _ in range(4)}
        assert len(texts) > 1


@pytest.mark.gen_test(timeout=30)
async def test_refused_captcha_reissue_answers_a_clear_error(client):
    await client.new_captcha("taken-id")
    stranger = {"Cookie": ""}  # another browser: no cookies of the owner's
    body = json.loads(
        (
            await client.http.fetch(
                f"{client.base_url}/api/v1.0/image_codes/taken-id",
                headers=stranger,
                raise_error=False,
            )
        ).body
    )
    assert body["errno"] == "4003" and "图片验证码" in body["errmsg"]
