"""Codes with a purpose (register, login, reset_password, change_mobile) and SMS login over
the ihome JSON API. Tests taking mode_client also run on a Redis Cluster."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.accounts.login_throttle import account_key
from services.store import keys
from tests.conftest import serving
from tests.flows import (
    add_user,
    another_browser,
    ask_code,
    assert_nothing_stored,
    assert_refusal,
    change_mobile,
    code_for,
    logged_in_as,
    pass_resend_interval,
    password_login,
    post,
    register,
    reset,
    sms_login,
)
from tests.users_sql import delete_user

# --- codes with a purpose ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("purpose", "registered", "logged_in", "errno", "errmsg"),
    [
        ("register", True, False, "4003", "手机号已注册"),
        (None, True, False, "4003", "手机号已注册"),
        # ("login", unregistered): served with accounts.sms_login_signs_up (the default), else
        # 4104: tests/test_sms_signup.py
        ("reset_password", False, False, "4104", "用户不存在"),
        ("change_mobile", False, False, "4101", "用户未登录"),
        ("change_mobile", True, True, "4003", "手机号已注册"),
        ("delete_account", False, False, "4101", "用户未登录"),  # to a logged-in user's own
        ("drop_account", False, False, "4103", "验证码用途错误"),
        (["login"], False, False, "4103", "验证码用途错误"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_code_refused_when_mobile_does_not_fit_purpose(
    client, sandbox, fresh_mobile, purpose, registered, logged_in, errno, errmsg
):
    mobile = fresh_mobile()
    if registered:
        await add_user(client, mobile)
    if logged_in:
        other = fresh_mobile()
        await add_user(client, other)
        assert (await password_login(client, other))["errno"] == "0"
    answer = await ask_code(client, mobile, purpose)
    assert (answer["errno"], answer["errmsg"]) == (errno, errmsg)
    await assert_nothing_stored(client, mobile)
    assert sandbox.inbox(mobile) == []
    # The refusal left no resend guard: the right purpose is served at once.
    right = "login" if registered else "register"
    assert (await ask_code(client, mobile, right, "p2"))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_purpose_binding_register_code_does_not_log_in(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await code_for(client, sandbox, mobile, "register")
    answer = await sms_login(client, mobile, code)
    assert answer == {"errno": "4004", "errmsg": "短信验证码错误，还可尝试4次"}
    assert await logged_in_as(client) is None
    assert (await reset(client, mobile, code))["errno"] == "4004"
    assert (await register(client, mobile, code))["errno"] == "0"  # still a register code


@pytest.mark.gen_test(timeout=30)
async def test_purpose_binding_login_code_does_not_register_or_reset(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "login")
    assert (await reset(client, mobile, code))["errno"] == "4004"
    await delete_user(client.app.services, mobile)
    assert (await register(client, mobile, code))["errno"] == "4004"
    await add_user(client, mobile)
    assert (await sms_login(client, mobile, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_purpose_binding_reset_code_does_not_log_in(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "reset_password")
    assert (await sms_login(client, mobile, code))["errno"] == "4004"
    assert await logged_in_as(client) is None
    assert (await reset(client, mobile, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_purpose_binding_change_code_does_not_register(client, sandbox, fresh_mobile):
    old, new = fresh_mobile(), fresh_mobile()
    await add_user(client, old)
    assert (await password_login(client, old))["errno"] == "0"
    code = await code_for(client, sandbox, new, "change_mobile")
    assert (await register(another_browser(client), new, code))["errno"] == "4004"
    assert (await change_mobile(client, new, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_one_guard_and_one_count_per_mobile_across_purposes(make_app, sandbox, fresh_mobile):
    """Cycling purposes gets a pumper no extra SMS: one resend guard, one hourly count."""
    app = await make_app(limits={"sms_per_mobile_hour": 3})
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, mobile)
        assert (await ask_code(client, mobile, "login", "c0"))["errno"] == "0"
        for i, purpose in enumerate(["reset_password", "login"]):
            text = await client.new_captcha(f"g{i}")
            body = {"mobile": mobile, "image_code": text, "image_code_id": f"g{i}"}
            response = await client.fetch(
                "/api/v1.0/sms_codes",
                "POST",
                {**body, "purpose": purpose},
                await client.xsrf_headers(),
            )
            assert_refusal(response, json.loads(response.body), "resend_interval", 1, 60)
        for i, purpose in enumerate(["reset_password", "login"]):
            await pass_resend_interval(client.app.services.redis, mobile)
            sandbox.clear()  # the sandbox's own 30 s rule is not what this test is about
            assert (await ask_code(client, mobile, purpose, f"c{i + 1}"))["errno"] == "0"
        await pass_resend_interval(client.app.services.redis, mobile)
        answer = await ask_code(client, mobile, "reset_password", "c3")
        assert answer["data"]["reason"] == "mobile_hourly"


@pytest.mark.gen_test(timeout=30)
async def test_purposes_share_one_guard_and_bind_codes(mode_client, sandbox, fresh_mobile):
    """A login code is refused by reset; another purpose is refused by the one resend guard;
    after the guard, a reset code replaces the login code, which then no longer logs in."""
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    login_code = await code_for(client, sandbox, mobile, "login", "b0")
    assert (await reset(client, mobile, login_code))["errno"] == "4004"
    assert (await ask_code(client, mobile, "reset_password", "b1"))["data"]["reason"] == (
        "resend_interval"
    )
    await pass_resend_interval(client.app.services.redis, mobile)
    sandbox.clear()
    reset_code = await code_for(client, sandbox, mobile, "reset_password", "b2")
    assert (await sms_login(client, mobile, reset_code))["errno"] == "4004"
    assert (await sms_login(client, mobile, login_code))["errno"] == "4004"  # replaced
    assert (await reset(client, mobile, reset_code))["errno"] == "0"
    assert await client.app.services.redis.get(keys.sms_mobile_hourly_key(mobile)) == "2"


# --- SMS login -----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_sms_login_starts_a_session_like_password_login(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    user = await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "login")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert (await sms_login(client, mobile, wrong))["errno"] == "4004"
    redis = client.app.services.redis
    # A wrong code is a failed login too: it counts against the login throttle.
    failures = keys.login_account_failures_key(account_key(user.user_id, mobile))
    assert await redis.get(failures) == "1"
    assert await sms_login(client, mobile, code) == {"errno": "0", "errmsg": "登录成功"}
    assert await logged_in_as(client) == mobile
    assert await redis.get(failures) == "1"  # the right code gave back its own attempt only
    assert (await sms_login(another_browser(client), mobile, code))["errno"] == "4002"


@pytest.mark.gen_test(timeout=30)
async def test_sms_login_wrong_codes_hit_the_login_throttle(make_app, sandbox, fresh_mobile):
    app = await make_app(accounts={"login_max_failures": 3})
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, mobile)
        code = await code_for(client, sandbox, mobile, "login")
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        answers = [await sms_login(client, mobile, wrong) for _ in range(4)]
        assert [a["errno"] for a in answers] == ["4004", "4004", "4004", "4201"]
        # Throttled before the code was looked at: the right code is still there, unused.
        assert (await sms_login(client, mobile, code))["errno"] == "4201"
        assert await client.app.services.redis.exists(keys.sms_code_key(mobile))


@pytest.mark.gen_test(timeout=30)
async def test_sms_login_past_the_account_threshold_needs_a_captcha(
    make_app, sandbox, fresh_mobile
):
    app = await make_app(accounts={"login_captcha_after": 2})
    async with serving(app) as client:
        mobile = fresh_mobile()
        await add_user(client, mobile)
        code = await code_for(client, sandbox, mobile, "login")
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        assert [(await sms_login(client, mobile, wrong))["errno"] for _ in range(2)] == [
            "4004",
            "4004",
        ]
        refused = await sms_login(client, mobile, code)
        assert refused["errno"] == "4201" and refused["data"]["reason"] == "captcha_required"
        text = await client.new_captcha("t1")
        body = {"mobile": mobile, "sms_code": code, "image_code": text, "image_code_id": "t1"}
        assert (await post(client, "/api/v1.0/sessions", body))["errno"] == "0"


@pytest.mark.parametrize(
    ("body", "errmsg"),
    [
        ({"sms_code": "123456"}, "参数不完整"),
        ({"mobile": "13812345678", "sms_code": 123456}, "参数不完整"),
        ({"mobile": "14012345678", "sms_code": "123456"}, "手机号格式错误"),
        ({"mobile": "13812345678", "sms_code": "12345"}, "短信验证码应为6位数字"),
        ({"mobile": "13812345678", "sms_code": "１２３４５６"}, "短信验证码应为6位数字"),
        (
            {"mobile": "13812345678", "sms_code": "123456", "password": "x"},
            "密码和短信验证码只能填写一项",
        ),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_sms_login_bad_input_is_paramerr(client, body, errmsg):
    assert await post(client, "/api/v1.0/sessions", body) == {"errno": "4103", "errmsg": errmsg}


@pytest.mark.gen_test(timeout=60)
async def test_sms_login_with_one_code_from_two_tabs_logs_in_once(
    mode_client, sandbox, fresh_mobile
):
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "login")
    tabs = [another_browser(client) for _ in range(8)]
    for tab in tabs:
        await tab.xsrf_headers()
    answers = await asyncio.gather(*(sms_login(tab, mobile, code) for tab in tabs))
    errnos = sorted(a["errno"] for a in answers)
    # One login; the others find the code used up, or (past 5 attempts) the login throttle.
    assert errnos[0] == "0" and set(errnos[1:]) <= {"4002", "4201"}, errnos
    assert [await logged_in_as(tab) for tab in tabs].count(mobile) == 1
