"""One-step SMS sign-in (issue 23 item 4): with accounts.sms_login_signs_up (the default) a
login code may be asked for any number, and a right one for a number without an account
creates it and logs in; off, ihome's 4104. Tests taking mode_client also run on a Redis
Cluster."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import serving
from tests.flows import (
    add_user,
    another_browser,
    ask_code,
    assert_nothing_stored,
    code_for,
    logged_in_as,
    password_login,
    post,
    sms_login,
    user_rows,
)


@pytest.mark.gen_test(timeout=60)
async def test_a_login_code_signs_a_new_number_up(mode_client, sandbox, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    code = await code_for(client, sandbox, "+86 " + mobile, "login")
    assert await sms_login(client, mobile, code) == {"errno": "0", "errmsg": "登录成功"}
    assert await logged_in_as(client) == mobile
    assert await user_rows(client, mobile) == 1
    profile = (await client.json("/api/v1.0/user"))["data"]
    assert (profile["name"], profile["mobile"]) == (mobile, mobile)
    # No password yet: any password is wrong (as for a wrong one), until one is set.
    assert (await password_login(another_browser(client), mobile, ""))["errno"] == "4103"
    assert (await password_login(another_browser(client), mobile, "!no-password$"))[
        "errno"
    ] == "4004"
    # The code is used up: no second account from it.
    assert (await sms_login(another_browser(client), mobile, code))["errno"] == "4002"
    assert await user_rows(client, mobile) == 1


@pytest.mark.gen_test(timeout=60)
async def test_the_code_request_answers_alike_registered_or_not(client, sandbox, fresh_mobile):
    known, unknown = fresh_mobile(), fresh_mobile()
    await add_user(client, known)
    answers = [await ask_code(client, mobile, "login", f"c{mobile}") for mobile in (known, unknown)]
    for answer in answers:
        answer["data"].pop("send_id")
    assert (
        answers[0] == answers[1] == {"errno": "0", "errmsg": "发送成功", "data": answers[0]["data"]}
    )
    assert sandbox.inbox(known) and sandbox.inbox(unknown)


@pytest.mark.parametrize(
    ("agree", "errmsg"),
    [(False, "请阅读并同意用户协议和隐私政策"), ("yes", "请阅读并同意用户协议和隐私政策")],
)
@pytest.mark.gen_test(timeout=60)
async def test_no_consent_creates_nothing_and_keeps_the_code(
    client, sandbox, fresh_mobile, agree, errmsg
):
    mobile = fresh_mobile()
    code = await code_for(client, sandbox, mobile, "login")
    body = {"mobile": mobile, "sms_code": code, "agree": agree}
    answer = await post(client, "/api/v1.0/sessions", body)
    assert answer == {"errno": "4103", "errmsg": errmsg}
    assert await user_rows(client, mobile) == 0
    assert await logged_in_as(client) is None
    body["agree"] = True
    assert (await post(client, "/api/v1.0/sessions", body))["errno"] == "0"  # same code
    assert await user_rows(client, mobile) == 1


@pytest.mark.gen_test(timeout=60)
async def test_a_registered_user_logs_in_whatever_agree_says(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "login")
    body = {"mobile": mobile, "sms_code": code, "agree": False}
    assert (await post(client, "/api/v1.0/sessions", body))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_one_code_signs_up_once(mode_client, sandbox, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    code = await code_for(client, sandbox, mobile, "login")
    tabs = [another_browser(client) for _ in range(5)]
    for tab in tabs:
        await tab.xsrf_headers()
    answers = await asyncio.gather(*(sms_login(tab, mobile, code) for tab in tabs))
    assert sorted(a["errno"] for a in answers) == ["0"] + ["4002"] * 4
    assert await user_rows(client, mobile) == 1


@pytest.mark.gen_test(timeout=60)
async def test_setting_off_login_codes_only_for_accounts(make_app, sandbox, fresh_mobile):
    async with serving(await make_app(accounts={"sms_login_signs_up": False})) as client:
        mobile = fresh_mobile()
        answer = await ask_code(client, mobile, "login")
        assert answer == {"errno": "4104", "errmsg": "用户不存在"}
        await assert_nothing_stored(client, mobile)
        assert sandbox.inbox(mobile) == []
        await add_user(client, mobile)
        code = await code_for(client, sandbox, mobile, "login", "p2")
        assert (await sms_login(client, mobile, code))["errno"] == "0"
