"""Changing the mobile proves the current factor (issue 27 item 2): a copied session cookie
alone must not move the account to another number. Tests taking mode_client also run on a
Redis Cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.flows import (
    PASSWORD,
    add_user,
    another_browser,
    change_mobile,
    code_for,
    last_code,
    logged_in_as,
    mobile_of,
    password_login,
    post,
    reset,
    sms_login,
    wrong,
)

MISSING_FACTOR = "请填写登录密码或原手机号收到的验证码"


def copy_of(client):
    """A second browser holding a copy of client's cookies (a shared computer, a stolen file)."""
    thief = another_browser(client)
    thief.cookies = dict(client.cookies)
    return thief


async def ask_confirm_code(client, captcha_id: str = "c", **extra) -> dict:
    """POST /api/v1.0/sms_codes for a `confirm_mobile` code: no mobile, it comes from the
    session."""
    text = await client.new_captcha(captcha_id)
    body = {"image_code": text, "image_code_id": captcha_id, "purpose": "confirm_mobile"}
    return await post(client, "/api/v1.0/sms_codes", {**body, **extra})


async def logged_in_user(client, mobile: str):
    user = await add_user(client, mobile)
    assert (await password_login(client, mobile))["errno"] == "0"
    return user


@pytest.mark.gen_test(timeout=60)
async def test_a_copied_session_cookie_alone_cannot_move_the_number(client, sandbox, fresh_mobile):
    owner_mobile, thief_mobile = fresh_mobile(), fresh_mobile()
    user = await logged_in_user(client, owner_mobile)
    thief = copy_of(client)
    code = await code_for(thief, sandbox, thief_mobile, "change_mobile")

    assert await change_mobile(thief, thief_mobile, code, {}) == {
        "errno": "4103",
        "errmsg": MISSING_FACTOR,
    }
    assert await change_mobile(thief, thief_mobile, code, {"password": "a-guess-123"}) == {
        "errno": "4106",
        "errmsg": "密码错误",
    }
    guess = await change_mobile(thief, thief_mobile, code, {"current_sms_code": "123456"})
    assert guess == {"errno": "4002", "errmsg": "原手机号的短信验证码失效，请重新获取"}

    assert await mobile_of(client, user.user_id) == owner_mobile
    assert sandbox.inbox(owner_mobile) == []  # no notice: nothing happened
    assert await logged_in_as(client) == owner_mobile
    assert (await password_login(another_browser(client), owner_mobile))["errno"] == "0"
    # The refused requests did not use the new number's code up: with the password (which
    # only the owner knows) the same code still works.
    assert (await change_mobile(client, thief_mobile, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_change_with_the_password_ends_every_other_session_and_says_how_to_undo(
    mode_client, sandbox, fresh_mobile
):
    client = mode_client
    old, new = fresh_mobile(), fresh_mobile()
    await logged_in_user(client, old)
    laptop, copy = another_browser(client), copy_of(client)
    assert (await password_login(laptop, old))["errno"] == "0"
    code = await code_for(client, sandbox, new, "change_mobile")
    assert (await change_mobile(client, new, code, {"password": PASSWORD}))["errno"] == "0"
    assert await logged_in_as(client) == new  # the caller goes on, in a new session
    assert await logged_in_as(laptop) is None
    assert await logged_in_as(copy) is None  # the copy of the old cookie is dead too
    [notice] = sandbox.inbox(old)
    assert "客服" in notice["text"] and "恢复" in notice["text"]  # how to get the account back


@pytest.mark.gen_test(timeout=60)
async def test_change_with_a_code_sent_to_the_current_number(mode_client, sandbox, fresh_mobile):
    client = mode_client
    old, new = fresh_mobile(), fresh_mobile()
    user = await logged_in_user(client, old)
    answer = await ask_confirm_code(client)
    assert answer["errno"] == "0", answer
    current = last_code(sandbox, old)  # went to the account's own number
    code = await code_for(client, sandbox, new, "change_mobile")

    # A right current code with a wrong new one: refused, and the current code is kept.
    bad_new = await change_mobile(client, new, wrong(code), {"current_sms_code": current})
    assert bad_new == {"errno": "4004", "errmsg": "短信验证码错误，还可尝试4次"}
    assert (await change_mobile(client, new, code, {"current_sms_code": current}))["errno"] == "0"
    assert await mobile_of(client, user.user_id) == new
    # The confirm_mobile code is bound to its purpose and used up.
    assert (await sms_login(another_browser(client), old, current))["errno"] != "0"


@pytest.mark.gen_test(timeout=30)
async def test_the_current_number_code_goes_only_to_the_session_users_number(
    client, sandbox, fresh_mobile
):
    owner_mobile, thief_mobile = fresh_mobile(), fresh_mobile()
    await logged_in_user(client, owner_mobile)
    thief = copy_of(client)
    named = await ask_confirm_code(thief, mobile=thief_mobile)
    assert named == {
        "errno": "4103",
        "errmsg": "原手机号的验证码只发往账号的手机号，请勿填写手机号",
    }
    assert sandbox.inbox(thief_mobile) == []
    anonymous = another_browser(client)
    assert await ask_confirm_code(anonymous, "c2") == {"errno": "4101", "errmsg": "用户未登录"}
    assert sandbox.inbox(owner_mobile) == []


@pytest.mark.gen_test(timeout=60)
async def test_a_wrong_password_counts_as_a_login_guess(client, sandbox, fresh_mobile):
    old, new = fresh_mobile(), fresh_mobile()
    await logged_in_user(client, old)
    thief = copy_of(client)
    code = await code_for(thief, sandbox, new, "change_mobile")
    failures = client.app.services.config.accounts.login_max_failures
    for _ in range(failures):
        assert (await change_mobile(thief, new, code, {"password": "guess-guess"}))["errno"] == (
            "4106"
        )
    throttled = await change_mobile(thief, new, code, {"password": PASSWORD})
    assert throttled["errno"] == "4201"
    assert throttled["data"]["reason"] == "login_account_ip"
    # The same counters as a login: this address may not guess the password there either.
    assert (await password_login(another_browser(client), old))["errno"] == "4201"


@pytest.mark.parametrize(
    ("factor", "errmsg"),
    [
        ({}, MISSING_FACTOR),
        (
            {"password": PASSWORD, "current_sms_code": "123456"},
            "登录密码和原手机号验证码只能填写一项",
        ),
        ({"password": ""}, "参数不完整"),
        ({"password": 123456}, "参数不完整"),
        ({"password": None}, MISSING_FACTOR),
        ({"current_sms_code": 123456}, "参数不完整"),
        ({"current_sms_code": "12ab56"}, "原手机号验证码应为6位数字"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_bad_factor_input_changes_nothing_and_keeps_the_code(
    client, sandbox, fresh_mobile, factor, errmsg
):
    old, new = fresh_mobile(), fresh_mobile()
    user = await logged_in_user(client, old)
    code = await code_for(client, sandbox, new, "change_mobile")
    assert await change_mobile(client, new, code, factor) == {"errno": "4103", "errmsg": errmsg}
    assert await mobile_of(client, user.user_id) == old
    assert await logged_in_as(client) == old
    assert (await change_mobile(client, new, code))["errno"] == "0"


def restore_mobile(config, *args: str) -> subprocess.CompletedProcess:
    """`python -m scripts.restore_mobile ARGS`, support's recovery command, on the test's stores."""
    env = {
        **os.environ,
        "SMSREG_MYSQL_PORT": str(config.mysql.port),
        "SMSREG_REDIS_URL": config.redis.url,
    }
    command = [sys.executable, "-m", "scripts.restore_mobile", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.gen_test(timeout=60)
async def test_support_restores_a_hijacked_mobile_and_ends_the_intruders_sessions(
    client, sandbox, fresh_mobile, config
):
    owner_mobile, thief_mobile = fresh_mobile(), fresh_mobile()
    user = await logged_in_user(client, owner_mobile)
    thief = copy_of(client)  # a copied cookie and the password: the change goes through
    code = await code_for(thief, sandbox, thief_mobile, "change_mobile")
    assert (await change_mobile(thief, thief_mobile, code))["errno"] == "0"
    assert "客服" in sandbox.inbox(owner_mobile)[-1]["text"]  # the owner is told whom to call

    taken = fresh_mobile()
    await add_user(client, taken)
    refused = restore_mobile(config, "--user-id", str(user.user_id), "--mobile", taken)
    assert refused.returncode == 1 and "nothing changed" in refused.stderr
    assert await mobile_of(client, user.user_id) == thief_mobile

    done = restore_mobile(config, "--user-id", str(user.user_id), "--mobile", owner_mobile)
    assert (done.returncode, done.stdout) == (
        0,
        f"restored user {user.user_id} to {owner_mobile[:3]}****{owner_mobile[-4:]}, "
        "ended 1 sessions\n",
    )
    assert await mobile_of(client, user.user_id) == owner_mobile
    assert await logged_in_as(thief) is None
    # The owner takes the account back with a password reset on their own number.
    reset_code = await code_for(client, sandbox, owner_mobile, "reset_password", "r")
    assert (await reset(client, owner_mobile, reset_code))["errno"] == "0"
