"""Registration, login, sessions and XSRF through the ihome JSON API."""

from __future__ import annotations

import asyncio
import json

import pytest
from passlib.hash import django_pbkdf2_sha256
from werkzeug.security import generate_password_hash

from services.store import keys
from tests.conftest import serving
from tests.flows import BAD_REGISTER_FORMS, PASSWORD, post, register, request_code, user_rows
from tests.users_sql import delete_user, insert_user

# --- register ----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_register_creates_user_and_logs_in(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    assert await register(client, mobile, code) == {"errno": "0", "errmsg": "注册成功"}
    assert await client.json("/api/v1.0/session") == {
        "errno": "0",
        "errmsg": "true",
        "data": {"name": mobile},
    }
    profile = (await client.json("/api/v1.0/user"))["data"]
    assert profile["name"] == profile["mobile"] == mobile
    assert profile["avatar"] == "" and len(profile["create_time"]) == 19
    row = await client.app.services.db.fetch_one(
        "SELECT password_hash FROM ih_user_profile WHERE mobile = %s", (mobile,)
    )
    assert row[0].startswith("$argon2id$")
    # One-time: the code is gone after a correct use.
    assert not await client.app.services.redis.exists(keys.sms_code_key(mobile))


@pytest.mark.gen_test(timeout=30)
async def test_session_cookie_is_signed_httponly_lax(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    body = {"mobile": mobile, "sms_code": code, "password": PASSWORD, "password2": PASSWORD}
    response = await client.fetch("/api/v1.0/users", "POST", body, await client.xsrf_headers())
    [cookie] = [c for c in response.headers.get_list("Set-Cookie") if c.startswith("session=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Max-Age=86400" in cookie
    assert "|" in cookie.split(";")[0]  # Tornado's signed-value format, not a bare id


@pytest.mark.parametrize(("change", "errmsg"), BAD_REGISTER_FORMS)
@pytest.mark.gen_test(timeout=30)
async def test_register_rejects_bad_params_and_keeps_code(
    client, sandbox, fresh_mobile, change, errmsg
):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    body = {"mobile": mobile, "sms_code": code, "password": PASSWORD, "password2": PASSWORD}
    answer = await post(client, "/api/v1.0/users", {**body, **change})
    assert answer == {"errno": "4103", "errmsg": errmsg}
    assert await user_rows(client, mobile) == 0
    assert (await register(client, mobile, code))["errno"] == "0"  # the code still works


@pytest.mark.gen_test(timeout=30)
async def test_register_without_code_is_nodata(client, fresh_mobile):
    answer = await register(client, fresh_mobile(), "123456")
    assert answer["errno"] == "4002"


# These tests take mode_client: they run on standalone Redis and on a Redis Cluster.


@pytest.mark.gen_test(timeout=60)
async def test_register_wrong_code_five_times_destroys_code(mode_client, sandbox, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = [await register(client, mobile, wrong) for _ in range(5)]
    assert [a["errno"] for a in answers] == ["4004"] * 5
    assert answers[0]["errmsg"] == "短信验证码错误，还可尝试4次"
    assert answers[4]["errmsg"] == "短信验证码错误次数过多，请重新获取"
    assert not await client.app.services.redis.exists(keys.sms_code_key(mobile))
    # The 6th attempt, even with the right code, finds no code: it was destroyed.
    assert (await register(client, mobile, code))["errno"] == "4002"
    assert await user_rows(client, mobile) == 0


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_wrong_codes_cannot_exceed_attempt_limit(
    mode_client, sandbox, fresh_mobile
):
    """20 concurrent wrong codes: 5 counted as wrong, then the code is gone for the rest."""
    client = mode_client
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    wrong = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 21)]
    answers = await asyncio.gather(*(register(client, mobile, w) for w in wrong))
    errnos = sorted(a["errno"] for a in answers)
    assert errnos.count("4004") == 5 and errnos.count("4002") == 15


@pytest.mark.gen_test(timeout=60)
async def test_twenty_concurrent_registrations_create_one_user(mode_client, sandbox, fresh_mobile):
    """20 concurrent registrations with one right code: one user, never a second row."""
    client = mode_client
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    answers = await asyncio.gather(*(register(client, mobile, code) for _ in range(20)))
    assert sorted(a["errno"] for a in answers) == ["0"] + ["4002"] * 19
    assert await user_rows(client, mobile) == 1


@pytest.mark.gen_test(timeout=30)
async def test_register_race_lost_to_another_insert_is_dataexist(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    # Another process registers the mobile between the SMS and this request.
    await insert_user(client.app.services, mobile)
    answer = await register(client, mobile, code)
    assert answer == {"errno": "4003", "errmsg": "手机号已注册"}
    assert await user_rows(client, mobile) == 1


@pytest.mark.gen_test(timeout=30)
async def test_register_db_failure_gives_the_code_back(
    client, sandbox, mariadb_server, fresh_mobile
):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    mariadb_server.stop()
    try:
        assert (await register(client, mobile, code))["errno"] == "4001"
    finally:
        mariadb_server.start()
    assert (await register(client, mobile, code))["errno"] == "0"  # no new SMS needed


# --- XSRF --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_register_without_xsrf_token_is_json_403(client, fresh_mobile):
    await client.xsrf_headers()  # has the cookie, but does not send the header
    body = {"mobile": fresh_mobile(), "sms_code": "123456", "password": "x" * 8}
    response = await client.fetch("/api/v1.0/users", "POST", body)
    assert response.code == 403
    assert json.loads(response.body)["errno"] == "4201"


@pytest.mark.gen_test(timeout=30)
async def test_xsrf_token_accepted_in_x_xsrftoken_header(client, fresh_mobile):
    token = (await client.xsrf_headers())["X-CSRFToken"]
    answer = await client.json(
        "/api/v1.0/users", "POST", {"mobile": fresh_mobile()}, {"X-XSRFToken": token}
    )
    assert answer["errno"] == "4103"  # got past XSRF to validation


@pytest.mark.gen_test(timeout=30)
async def test_the_captcha_gives_the_csrf_cookies_and_a_send_needs_none(client, fresh_mobile):
    """A front-end shows the CAPTCHA before it can ask for a code: the image's GET hands the
    browser its CSRF cookies (and ihome's and meiduo's copies); the send's GET, made without
    them, sets none (issue 26: ~7 % of a send's CPU), and the POST after it still works."""
    text = await client.new_captcha("csrf-from-the-image")
    assert {"_xsrf", "csrf_token", "csrftoken"} <= set(client.cookies)
    client.cookies.clear()
    query = f"image_code={text}&image_code_id=csrf-from-the-image"
    response = await client.fetch(f"/api/v1.0/sms_codes/{fresh_mobile()}?{query}")
    assert json.loads(response.body)["errno"] == "0"
    assert response.headers.get_list("Set-Cookie") == []
    # Any other GET still hands a browser without them its cookies.
    response = await client.fetch("/api/v1.0/session")
    assert {"_xsrf", "csrf_token", "csrftoken"} <= set(client.cookies)


# --- login, session, logout --------------------------------------------------------------


async def registered_user(client, sandbox, mobile: str) -> None:
    code = await request_code(client, sandbox, mobile, "login-setup")
    assert (await register(client, mobile, code))["errno"] == "0"
    assert (await client.json("/api/v1.0/session", "DELETE", None, await client.xsrf_headers()))[
        "errno"
    ] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_login_logout_login(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await registered_user(client, sandbox, mobile)
    assert (await client.json("/api/v1.0/session"))["errno"] == "4101"
    login = {"mobile": mobile, "password": PASSWORD}
    assert await post(client, "/api/v1.0/sessions", login) == {"errno": "0", "errmsg": "登录成功"}
    assert (await client.json("/api/v1.0/session"))["data"] == {"name": mobile}
    stolen_cookie = client.cookies["session"]
    assert (await client.json("/api/v1.0/session", "DELETE", None, await client.xsrf_headers()))[
        "errno"
    ] == "0"
    # Logout deleted the server-side session: replaying the old cookie does not log in.
    client.cookies["session"] = stolen_cookie
    assert (await client.json("/api/v1.0/session"))["errno"] == "4101"
    assert (await client.json("/api/v1.0/user"))["errno"] == "4101"


@pytest.mark.gen_test(timeout=30)
async def test_profile_of_a_deleted_user_ends_the_session(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    assert (await register(client, mobile, code))["errno"] == "0"
    await delete_user(client.app.services, mobile)
    # The login check reads the session only: it still says "true" until the profile is asked.
    assert (await client.json("/api/v1.0/session"))["errno"] == "0"
    assert await client.json("/api/v1.0/user") == {"errno": "4101", "errmsg": "用户未登录"}
    # The session of a user who is gone ended with that answer.
    assert await client.json("/api/v1.0/session") == {"errno": "4101", "errmsg": "false"}


@pytest.mark.gen_test(timeout=30)
async def test_session_lives_in_redis_with_ttl(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    await register(client, mobile, code)
    redis = client.app.services.redis
    [key] = [k async for k in redis.scan_iter("session:*") if not k.endswith(":index")]
    assert 86000 <= await redis.ttl(key) <= 86400
    user_id = json.loads(await redis.get(key))["user_id"]
    assert key.startswith(f"session:{{{user_id}}}:")  # the user's slot, with its index


@pytest.mark.gen_test(timeout=30)
async def test_wrong_password_and_unknown_mobile_get_the_same_answer(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await registered_user(client, sandbox, mobile)
    wrong = await post(client, "/api/v1.0/sessions", {"mobile": mobile, "password": "nope-nope"})
    unknown = await post(
        client, "/api/v1.0/sessions", {"mobile": fresh_mobile(), "password": PASSWORD}
    )
    assert wrong == unknown == {"errno": "4004", "errmsg": "用户名或密码错误"}


@pytest.mark.gen_test(timeout=60)
async def test_login_blocked_per_ip_after_too_many_failures(make_app, sandbox, fresh_mobile):
    app = await make_app(accounts={"login_ip_max_failures": 5})
    async with serving(app) as client:
        mobile = fresh_mobile()
        await registered_user(client, sandbox, mobile)
        for _ in range(5):  # five different mobiles, so only the IP limit can trigger
            wrong = {"mobile": fresh_mobile(), "password": "wrong-one"}
            assert (await post(client, "/api/v1.0/sessions", wrong))["errno"] == "4004"
        login = {"mobile": mobile, "password": PASSWORD}
        blocked = await post(client, "/api/v1.0/sessions", login)
        assert blocked["errno"] == "4201" and blocked["data"]["reason"] == "login_ip"
        assert 590 <= blocked["data"]["retry_after"] <= 600


# Per account and per (account, address): tests/test_login_throttle.py.


@pytest.mark.gen_test(timeout=60)
async def test_forged_forwarded_for_does_not_dodge_ip_limit(make_app, fresh_mobile):
    app = await make_app(accounts={"login_ip_max_failures": 5})
    async with serving(app) as client:
        # No trusted proxies configured: X-Forwarded-For is ignored.
        for i in range(5):
            wrong = {"mobile": fresh_mobile(), "password": "wrong-one"}
            forged = {"X-Forwarded-For": f"203.0.113.{i}"}
            assert (await post(client, "/api/v1.0/sessions", wrong, forged))["errno"] == "4004"
        wrong = {"mobile": fresh_mobile(), "password": "wrong-one"}
        forged = {"X-Forwarded-For": "1.2.3.4"}
        assert (await post(client, "/api/v1.0/sessions", wrong, forged))["errno"] == "4201"


@pytest.mark.gen_test(timeout=60)
async def test_successful_login_is_not_counted_as_failure(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await registered_user(client, sandbox, mobile)
    login = {"mobile": mobile, "password": PASSWORD}
    for _ in range(8):
        assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"


@pytest.mark.parametrize(
    "legacy_hash",
    [
        generate_password_hash(PASSWORD, method="pbkdf2:sha256:50000", salt_length=8),
        django_pbkdf2_sha256.using(rounds=36000).hash(PASSWORD),
    ],
    ids=["werkzeug-ihome", "django-meiduo"],
)
@pytest.mark.gen_test(timeout=30)
async def test_legacy_hash_logs_in_and_is_upgraded_to_argon2id(client, fresh_mobile, legacy_hash):
    mobile = fresh_mobile()
    db = client.app.services.db
    await insert_user(client.app.services, mobile, password_hash=legacy_hash)
    wrong = await post(client, "/api/v1.0/sessions", {"mobile": mobile, "password": "bad-pass"})
    assert wrong["errno"] == "4004"
    login = {"mobile": mobile, "password": PASSWORD}
    assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"
    row = await db.fetch_one("SELECT password_hash FROM ih_user_profile WHERE mobile=%s", (mobile,))
    assert row[0].startswith("$argon2id$")
    assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_secure_cookies_when_configured(make_app, sandbox, fresh_mobile):
    app = await make_app(security={"secure_cookies": True})
    async with serving(app) as client:
        mobile = fresh_mobile()
        code = await request_code(client, sandbox, mobile)
        body = {"mobile": mobile, "sms_code": code, "password": PASSWORD, "password2": PASSWORD}
        response = await client.fetch("/api/v1.0/users", "POST", body, await client.xsrf_headers())
        [cookie] = [c for c in response.headers.get_list("Set-Cookie") if c.startswith("session=")]
        assert "Secure" in cookie
