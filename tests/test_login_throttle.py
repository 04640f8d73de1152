"""Credential stuffing and lockout (issue 10 items 2, 3) and session rotation (item 8)."""

from __future__ import annotations

import urllib.parse

import pytest
from passlib.hash import django_pbkdf2_sha256

from tests.conftest import serving
from tests.flows import post, register, request_code
from tests.users_sql import insert_user

PASSWORD = "abc12345xyz"
WRONG = "wrong12345"
PROXY = {"security": {"trusted_proxies": "127.0.0.0/8"}}


async def add_user(client, name: str, mobile: str) -> None:
    """A user with a meiduo-style name (inserted directly: the SMS flow is not under test)."""
    password_hash = django_pbkdf2_sha256.using(rounds=1000).hash(PASSWORD)
    await insert_user(client.app.services, mobile, name, password_hash)


async def meiduo_login(client, username: str, password: str, ip: str, **extra):
    """meiduo's form login from `ip` (through the trusted proxy); the response."""
    if "csrftoken" not in client.cookies:
        await client.fetch("/image_codes/00000000-0000-0000-0000-000000000000/")
    fields = {
        "csrfmiddlewaretoken": client.cookies["csrftoken"],
        "username": username,
        "password": password,
        **extra,
    }
    return await client.fetch(
        "/login/",
        "POST",
        urllib.parse.urlencode(fields),
        {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": ip},
    )


async def ihome_login(client, mobile: str, password: str, ip: str, **extra) -> dict:
    body = {"mobile": mobile, "password": password, **extra}
    return await post(client, "/api/v1.0/sessions", body, {"X-Forwarded-For": ip})


@pytest.fixture
def behind_proxy(make_app):
    """An app behind a trusted proxy, so each test request can come from its own address."""

    async def build(**accounts):
        return await make_app(**PROXY, accounts=accounts)

    return build


# --- 2. one counter per account, whatever the spelling -----------------------------------

CAPTCHA_NEEDED = "请先输入图片验证码"


@pytest.mark.gen_test(timeout=90)
async def test_every_spelling_of_an_account_shares_one_counter(behind_proxy, fresh_mobile):
    app = await behind_proxy()
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, "alice_sec", mobile)
        spellings = ["alice_sec", "ALICE_SEC", "Alice_Sec", mobile, "aLiCe_sEc"]
        for i in range(20):  # 20 failures from 20 addresses, 4 per spelling
            response = await meiduo_login(client, spellings[i % 5], WRONG, f"203.0.113.{i}")
            assert response.code == 400 and "用户名或密码错误" in response.body.decode()
        # The account has had its 20 failures (the default): a new spelling is the same
        # account, and the right password alone no longer gets in.
        for spelling in ("ALICE_sec", mobile):
            response = await meiduo_login(client, spelling, PASSWORD, "198.51.100.77")
            assert response.code == 429, response.body.decode()
            assert CAPTCHA_NEEDED in response.body.decode()


@pytest.mark.gen_test(timeout=60)
async def test_spellings_from_one_address_share_the_pair_counter(behind_proxy, fresh_mobile):
    app = await behind_proxy()
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, "bob_sec", mobile)
        for spelling in ["bob_sec", "BOB_SEC", "Bob_Sec", mobile, "bOb_sEc"]:
            response = await meiduo_login(client, spelling, WRONG, "203.0.113.200")
            assert response.code == 400
        response = await meiduo_login(client, "BOB_sec", PASSWORD, "203.0.113.200")
        assert response.code == 429 and "错误次数过多" in response.body.decode()


@pytest.mark.gen_test(timeout=90)
async def test_unknown_accounts_are_counted_by_canonical_spelling(behind_proxy):
    app = await behind_proxy()
    async with serving(app) as client:
        spellings = ["ghost_user", "GHOST_USER", "Ghost_User", "ghost_USER", "gHost_user"]
        for i in range(20):
            response = await meiduo_login(client, spellings[i % 5], WRONG, f"203.0.113.{i}")
            assert response.code == 400  # the same answer as a known account's
        response = await meiduo_login(client, "GHOST_user", WRONG, "198.51.100.78")
        assert response.code == 429 and CAPTCHA_NEEDED in response.body.decode()


# --- 3. no lockout of the owner; distributed guessing costs a CAPTCHA --------------------


@pytest.mark.gen_test(timeout=60)
async def test_attacker_failures_do_not_lock_out_the_owner(behind_proxy, fresh_mobile):
    app = await behind_proxy()
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, mobile, mobile)
        for _ in range(5):
            assert (await ihome_login(client, mobile, WRONG, "203.0.113.66"))["errno"] == "4004"
        refused = await ihome_login(client, mobile, PASSWORD, "203.0.113.66")
        assert refused["errno"] == "4201"
        assert refused["data"]["reason"] == "login_account_ip"
        assert 590 <= refused["data"]["retry_after"] <= 600
        # The owner, from home, with the right password: in at once.
        owner = await ihome_login(client, mobile, PASSWORD, "198.51.100.1")
        assert owner == {"errno": "0", "errmsg": "登录成功"}


@pytest.mark.gen_test(timeout=60)
async def test_one_address_guessing_many_accounts_is_limited(behind_proxy, fresh_mobile):
    app = await behind_proxy(login_ip_max_failures=4)
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, mobile, mobile)
        for _ in range(4):  # four different accounts: no pair limit is reached
            assert (await ihome_login(client, fresh_mobile(), WRONG, "203.0.113.9"))[
                "errno"
            ] == "4004"
        refused = await ihome_login(client, mobile, PASSWORD, "203.0.113.9")
        assert refused["errno"] == "4201" and refused["data"]["reason"] == "login_ip"
        assert (await ihome_login(client, mobile, PASSWORD, "198.51.100.2"))["errno"] == "0"


async def captcha(client, captcha_id: str) -> str:
    return await client.new_captcha(captcha_id)


@pytest.mark.gen_test(timeout=90)
async def test_distributed_guessing_needs_a_captcha_per_guess(make_mode_app, fresh_mobile):
    """On standalone Redis and on a Redis Cluster (make_mode_app)."""
    app = await make_mode_app(**PROXY, accounts={"login_captcha_after": 3})
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, mobile, mobile)
        for i in range(3):  # a botnet: each guess from another address
            assert (await ihome_login(client, mobile, WRONG, f"203.0.113.{i}"))["errno"] == "4004"
        # Past the threshold every login for the account needs a solved CAPTCHA, even the
        # owner's with the right password (that is the price of the attack, paid by all).
        for password in (WRONG, PASSWORD):
            answer = await ihome_login(client, mobile, password, "198.51.100.3")
            assert answer["errno"] == "4201"
            assert answer["data"]["reason"] == "captcha_required"
        text = await captcha(client, "login-c1")
        wrong_text = "".join("3" if c != "3" else "4" for c in text)
        answer = await ihome_login(
            client,
            mobile,
            PASSWORD,
            "198.51.100.3",
            image_code=wrong_text,
            image_code_id="login-c1",
        )
        assert answer["errno"] == "4004" and answer["errmsg"] == "图片验证码错误"
        # Each CAPTCHA buys one guess: a used one is gone.
        text = await captcha(client, "login-c2")
        guess = {"image_code": text, "image_code_id": "login-c2"}
        assert (await ihome_login(client, mobile, WRONG, "203.0.113.50", **guess))[
            "errno"
        ] == "4004"
        assert (await ihome_login(client, mobile, PASSWORD, "198.51.100.3", **guess))[
            "errno"
        ] == "4002"
        text = await captcha(client, "login-c3")
        guess = {"image_code": text, "image_code_id": "login-c3"}
        assert (await ihome_login(client, mobile, PASSWORD, "198.51.100.3", **guess))[
            "errno"
        ] == "0"
        # Unknown accounts behave the same (nothing tells them apart).
        ghost = fresh_mobile()
        for i in range(3):
            assert (await ihome_login(client, ghost, WRONG, f"203.0.113.{i}"))["errno"] == "4004"
        answer = await ihome_login(client, ghost, WRONG, "198.51.100.3")
        assert answer["data"]["reason"] == "captcha_required"


def test_captcha_threshold_defaults_to_twenty_an_hour(config):
    assert config.accounts.login_captcha_after == 20
    assert config.accounts.login_captcha_window == 3600


# --- 8. sessions: rotate on login, end on logout, end all on password change -------------


async def session_name(client) -> str | None:
    answer = await client.json("/api/v1.0/session")
    return answer["data"]["name"] if answer["errno"] == "0" else None


@pytest.mark.gen_test(timeout=60)
async def test_login_ends_the_previous_session(client, fresh_mobile):
    mobile, other = fresh_mobile(), fresh_mobile()
    await add_user(client, mobile, mobile)
    await add_user(client, other, other)
    login = {"mobile": mobile, "password": PASSWORD}
    assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"
    first_cookie = client.cookies["session"]
    login = {"mobile": other, "password": PASSWORD}
    assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"
    assert client.cookies["session"] != first_cookie
    assert await session_name(client) == other
    client.cookies["session"] = first_cookie  # the old cookie, replayed
    assert await session_name(client) is None


@pytest.mark.gen_test(timeout=60)
async def test_registration_cookie_dies_at_next_login_and_logout(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    assert (await register(client, mobile, code, PASSWORD))["errno"] == "0"
    registration_cookie = client.cookies["session"]
    login = {"mobile": mobile, "password": PASSWORD}
    assert (await post(client, "/api/v1.0/sessions", login))["errno"] == "0"
    login_cookie = client.cookies["session"]
    client.cookies["session"] = registration_cookie
    assert await session_name(client) is None
    client.cookies["session"] = login_cookie
    assert (await client.json("/api/v1.0/session", "DELETE", None, await client.xsrf_headers()))[
        "errno"
    ] == "0"
    for cookie in (registration_cookie, login_cookie):
        client.cookies["session"] = cookie
        assert await session_name(client) is None


@pytest.mark.gen_test(timeout=60)
async def test_password_change_ends_every_session_of_the_user(make_mode_app, fresh_mobile):
    """Also on a Redis Cluster (make_mode_app): the end-all script stays in the user's slot."""
    app = await make_mode_app()
    async with serving(app) as phone, serving(app) as laptop, serving(app) as bystander:
        mobile, other = fresh_mobile(), fresh_mobile()
        await add_user(phone, mobile, mobile)
        await add_user(phone, other, other)
        for device, who in ((phone, mobile), (laptop, mobile), (bystander, other)):
            body = {"mobile": who, "password": PASSWORD}
            assert (await post(device, "/api/v1.0/sessions", body))["errno"] == "0"
        user = await app.services.users.by_mobile(mobile)
        await app.services.accounts.change_password(user.user_id, "n3w-password")
        assert await session_name(phone) is None
        assert await session_name(laptop) is None
        assert await session_name(bystander) == other  # other users keep theirs
        body = {"mobile": mobile, "password": "n3w-password"}
        assert (await post(phone, "/api/v1.0/sessions", body))["errno"] == "0"
        assert await session_name(phone) == mobile
