"""The rest of the phone account over the ihome JSON API: password reset, change of mobile,
one canonical number, WebOTP. Tests taking mode_client also run on a Redis Cluster."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest

from services.config import ConfigError, load_config
from tests.conftest import serving
from tests.flows import (
    NEW_PASSWORD,
    PASSWORD_HASH,
    add_user,
    another_browser,
    ask_code,
    change_mobile,
    code_for,
    logged_in_as,
    mobile_of,
    password_login,
    post,
    register,
    reset,
)

# --- password reset ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_reset_password_ends_every_session_and_logs_the_caller_in(
    mode_client, sandbox, fresh_mobile
):
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    phone, laptop = another_browser(client), another_browser(client)
    for device in (phone, laptop):
        assert (await password_login(device, mobile))["errno"] == "0"
        assert await logged_in_as(device) == mobile
    code = await code_for(client, sandbox, mobile, "reset_password")
    assert await reset(client, mobile, code) == {"errno": "0", "errmsg": "密码已重置"}
    assert await logged_in_as(client) == mobile
    assert await logged_in_as(phone) is None
    assert await logged_in_as(laptop) is None
    assert (await password_login(phone, mobile))["errno"] == "4004"
    assert (await password_login(phone, mobile, NEW_PASSWORD))["errno"] == "0"
    row = await client.app.services.db.fetch_one(
        "SELECT password_hash FROM ih_user_profile WHERE mobile = %s", (mobile,)
    )
    assert row[0].startswith("$argon2id$") and row[0] != PASSWORD_HASH
    assert (await reset(laptop, mobile, code))["errno"] == "4002"  # used up


@pytest.mark.parametrize(
    ("change", "errmsg"),
    [
        ({"password2": "different"}, "两次密码不一致"),
        ({"password": "12345", "password2": "12345"}, "密码长度应为6-64位"),
        ({"mobile": "+86 140 1234 5678"}, "手机号格式错误"),
        ({"sms_code": None}, "参数不完整"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_reset_bad_input_changes_nothing_and_keeps_the_code(
    client, sandbox, fresh_mobile, change, errmsg
):
    mobile = fresh_mobile()
    await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "reset_password")
    body = {"mobile": mobile, "sms_code": code, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    answer = await post(client, "/api/v1.0/password_reset", {**body, **change})
    assert answer == {"errno": "4103", "errmsg": errmsg}
    assert (await password_login(another_browser(client), mobile))["errno"] == "0"
    assert (await reset(client, mobile, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_resets_with_one_code_one_wins(mode_client, sandbox, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "reset_password")
    tabs = [another_browser(client) for _ in range(6)]
    for tab in tabs:
        await tab.xsrf_headers()
    passwords = [f"password-{i}" for i in range(len(tabs))]
    answers = await asyncio.gather(
        *(reset(tab, mobile, code, pw) for tab, pw in zip(tabs, passwords, strict=True))
    )
    errnos = [a["errno"] for a in answers]
    assert sorted(errnos) == ["0"] + ["4002"] * 5
    winner = passwords[errnos.index("0")]
    probe = another_browser(client)
    assert (await password_login(probe, mobile, winner))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_reset_with_database_down_gives_the_code_back(
    client, sandbox, mariadb_server, fresh_mobile
):
    mobile = fresh_mobile()
    await add_user(client, mobile)
    code = await code_for(client, sandbox, mobile, "reset_password")
    mariadb_server.stop()
    try:
        assert (await reset(client, mobile, code))["errno"] == "4001"
    finally:
        mariadb_server.start()
    assert (await password_login(another_browser(client), mobile))["errno"] == "0"  # unchanged
    assert (await reset(client, mobile, code))["errno"] == "0"  # no new SMS needed


# --- change of mobile ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_change_mobile_moves_the_account_and_ends_other_sessions(
    mode_client, sandbox, fresh_mobile
):
    client = mode_client
    old, new = fresh_mobile(), fresh_mobile()
    user = await add_user(client, old)
    other_device = another_browser(client)
    for device in (client, other_device):
        assert (await password_login(device, old))["errno"] == "0"
    code = await code_for(client, sandbox, new, "change_mobile")
    assert await change_mobile(client, new, code) == {
        "errno": "0",
        "errmsg": "手机号已更换",
        "data": {"mobile": new, "name": new},  # named after the old mobile: renamed
    }
    assert await logged_in_as(client) == new
    assert await logged_in_as(other_device) is None
    assert (await client.json("/api/v1.0/user"))["data"]["mobile"] == new
    assert await mobile_of(client, user.user_id) == new
    # The old number hears of it, through its own template.
    [notice] = sandbox.inbox(old)
    assert notice["templateId"] == client.app.services.config.sms.mobile_changed_template_id
    assert notice["datas"] == [f"{new[:3]}****{new[-4:]}"]
    probe = another_browser(client)
    assert (await password_login(probe, old))["errno"] == "4004"
    assert (await password_login(probe, new))["errno"] == "0"
    # The old number is free again: it may register.
    assert (await ask_code(probe, old, "register", "probe"))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_change_mobile_keeps_a_chosen_name_and_a_taken_one(client, sandbox, fresh_mobile):
    old, new = fresh_mobile(), fresh_mobile()
    await add_user(client, old, name="alice_w")
    assert (await password_login(client, old))["errno"] == "0"
    code = await code_for(client, sandbox, new, "change_mobile")
    assert (await change_mobile(client, new, code))["data"] == {"mobile": new, "name": "alice_w"}

    old2, new2 = fresh_mobile(), fresh_mobile()
    await add_user(client, old2)
    await add_user(client, fresh_mobile(), name=new2)  # someone is *named* new2 already
    bob = another_browser(client)
    assert (await password_login(bob, old2))["errno"] == "0"
    code = await code_for(bob, sandbox, new2, "change_mobile", "p2")
    assert (await change_mobile(bob, new2, code))["data"] == {"mobile": new2, "name": old2}


@pytest.mark.gen_test(timeout=30)
async def test_change_mobile_needs_a_session(client, sandbox, fresh_mobile):
    answer = await change_mobile(client, fresh_mobile(), "123456")
    assert answer == {"errno": "4101", "errmsg": "用户未登录"}


@pytest.mark.gen_test(timeout=30)
async def test_change_mobile_to_a_number_taken_meanwhile_is_dataexist(
    client, sandbox, fresh_mobile
):
    """The unique index decides: another account got the number after the code was sent."""
    old, new = fresh_mobile(), fresh_mobile()
    user = await add_user(client, old)
    assert (await password_login(client, old))["errno"] == "0"
    code = await code_for(client, sandbox, new, "change_mobile")
    await add_user(client, new)
    assert await change_mobile(client, new, code) == {"errno": "4003", "errmsg": "手机号已注册"}
    assert await mobile_of(client, user.user_id) == old
    assert await logged_in_as(client) == old  # nothing changed, still logged in
    assert sandbox.inbox(old) == []


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_changes_to_one_number_one_wins(mode_client, sandbox, fresh_mobile):
    """Two users claim one number at once, both with the right code: one account gets it."""
    client = mode_client
    target = fresh_mobile()
    users, browsers = [], []
    for _ in range(2):
        mobile = fresh_mobile()
        users.append(await add_user(client, mobile))
        browser = another_browser(client)
        assert (await password_login(browser, mobile))["errno"] == "0"
        browsers.append(browser)
    code = await code_for(browsers[0], sandbox, target, "change_mobile")
    answers = await asyncio.gather(*(change_mobile(b, target, code) for b in browsers))
    assert sorted(a["errno"] for a in answers) == ["0", "4002"]
    mobiles = [await mobile_of(client, u.user_id) for u in users]
    assert mobiles.count(target) == 1


@pytest.mark.gen_test(timeout=60)
async def test_change_mobile_with_database_down_gives_the_code_back(
    client, sandbox, mariadb_server, fresh_mobile
):
    old, new = fresh_mobile(), fresh_mobile()
    user = await add_user(client, old)
    assert (await password_login(client, old))["errno"] == "0"
    code = await code_for(client, sandbox, new, "change_mobile")
    mariadb_server.stop()
    try:
        assert (await change_mobile(client, new, code))["errno"] == "4001"
    finally:
        mariadb_server.start()
    assert await mobile_of(client, user.user_id) == old
    assert (await change_mobile(client, new, code))["errno"] == "0"


# --- one canonical number ------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_spellings_of_one_number_are_one_account_and_one_guard(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    spelled = f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"
    code = await code_for(client, sandbox, spelled, "register")
    assert sandbox.inbox(mobile)[-1]["to"] == mobile  # sent to the canonical number
    # Another spelling hits the same resend guard.
    assert (await ask_code(client, f"0086{mobile}", "register", "p2"))["errno"] == "4201"
    full_width = mobile.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert (await register(client, full_width, code))["errno"] == "0"
    assert await logged_in_as(client) == mobile
    probe = another_browser(client)
    assert (await password_login(probe, f"86-{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"))[
        "errno"
    ] == "0"
    # meiduo's as-you-type check sees the same account under any spelling.
    path = "/mobiles/" + urllib.parse.quote(spelled) + "/count/"
    assert (await probe.json(path))["count"] == 1


# --- WebOTP ----------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_webotp_line_ends_the_sms_when_configured(make_app, sandbox, fresh_mobile):
    app = await make_app(sms={"webotp_domain": "example.com", "template_id": "3"})
    async with serving(app) as client:
        mobile = fresh_mobile()
        code = await code_for(client, sandbox, mobile, "register")
        text = sandbox.inbox(mobile)[-1]["text"]
        assert text.splitlines()[-1] == f"@example.com #{code}"


@pytest.mark.gen_test(timeout=30)
async def test_no_webotp_line_by_default(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await code_for(client, sandbox, mobile, "register")
    assert sandbox.inbox(mobile)[-1]["datas"] == [sandbox.inbox(mobile)[-1]["datas"][0], "5"]
    assert "@" not in sandbox.inbox(mobile)[-1]["text"]


@pytest.mark.parametrize("domain", ["https://example.com", "example.com:443", "Example.com/x"])
def test_webotp_domain_must_be_a_bare_host(domain):
    with pytest.raises(ConfigError, match="webotp_domain"):
        load_config(None, environ={"SMSREG_SMS_WEBOTP_DOMAIN": domain})
