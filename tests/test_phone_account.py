"""The whole phone account: codes with a purpose, SMS login, password reset, change of mobile,
one canonical number. The check_* scenarios also run on a Redis Cluster (tests/test_cluster.py).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import argon2
import pytest

from services import keys
from services.config import ConfigError, load_config
from services.login_throttle import account_key
from services.mobiles import canonical_mobile
from tests.conftest import Client, serving
from tests.test_accounts import PASSWORD, post, register
from tests.test_limits import assert_nothing_stored, assert_refusal, pass_resend_interval

NEW_PASSWORD = "n3w-secret-pass"
# Users made directly in the table (hashing once per module keeps the tests fast).
PASSWORD_HASH = argon2.PasswordHasher().hash(PASSWORD)


async def add_user(client, mobile: str, name: str | None = None):
    """A registered user, without spending an SMS on it."""
    return await client.app.services.users.create(name or mobile, mobile, PASSWORD_HASH)


async def ask_code(client, mobile: str, purpose: str | None, captcha_id: str = "p") -> dict:
    """POST /api/v1.0/sms_codes with a fresh CAPTCHA and the given purpose (None: omitted)."""
    text = await client.new_captcha(captcha_id)
    body = {"mobile": mobile, "image_code": text, "image_code_id": captcha_id}
    if purpose is not None:
        body["purpose"] = purpose
    return await post(client, "/api/v1.0/sms_codes", body)


async def code_for(client, sandbox, mobile: str, purpose: str | None, captcha_id="p") -> str:
    answer = await ask_code(client, mobile, purpose, captcha_id)
    assert answer["errno"] == "0", answer
    return sandbox.inbox(canonical_mobile(mobile))[-1]["datas"][0]


async def sms_login(client, mobile: str, code: str) -> dict:
    return await post(client, "/api/v1.0/sessions", {"mobile": mobile, "sms_code": code})


async def password_login(client, mobile: str, password: str = PASSWORD) -> dict:
    return await post(client, "/api/v1.0/sessions", {"mobile": mobile, "password": password})


async def reset(client, mobile: str, code: str, password: str = NEW_PASSWORD) -> dict:
    body = {"mobile": mobile, "sms_code": code, "password": password, "password2": password}
    return await post(client, "/api/v1.0/password_reset", body)


async def change_mobile(client, mobile: str, code: str) -> dict:
    body = {"mobile": mobile, "sms_code": code}
    return await client.json("/api/v1.0/user/mobile", "PUT", body, await client.xsrf_headers())


async def logged_in_as(client) -> str | None:
    answer = await client.json("/api/v1.0/session")
    return answer["data"]["name"] if answer["errno"] == "0" else None


def another_browser(client) -> Client:
    return Client(client.base_url, client.app)


async def mobile_of(client, user_id: int) -> str:
    row = await client.app.services.db.fetch_one(
        "SELECT mobile, name FROM ih_user_profile WHERE id = %s", (user_id,)
    )
    return row[0]


# --- codes with a purpose ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("purpose", "registered", "logged_in", "errno", "errmsg"),
    [
        ("register", True, False, "4003", "手机号已注册"),
        (None, True, False, "4003", "手机号已注册"),
        ("login", False, False, "4104", "用户不存在"),
        ("reset_password", False, False, "4104", "用户不存在"),
        ("change_mobile", False, False, "4101", "用户未登录"),
        ("change_mobile", True, True, "4003", "手机号已注册"),
        ("delete_account", False, False, "4103", "验证码用途错误"),
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
    await client.app.services.db.execute("DELETE FROM ih_user_profile WHERE mobile = %s", (mobile,))
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
            await pass_resend_interval(client, mobile)
            sandbox.clear()  # the sandbox's own 30 s rule is not what this test is about
            assert (await ask_code(client, mobile, purpose, f"c{i + 1}"))["errno"] == "0"
        await pass_resend_interval(client, mobile)
        answer = await ask_code(client, mobile, "reset_password", "c3")
        assert answer["data"]["reason"] == "mobile_hourly"


@pytest.mark.gen_test(timeout=30)
async def test_purposes_share_one_guard_and_bind_codes(client, sandbox, fresh_mobile):
    await check_purposes_share_guard_and_bind_codes(client, sandbox, fresh_mobile)


async def check_purposes_share_guard_and_bind_codes(client, sandbox, fresh_mobile) -> None:
    """A login code is refused by reset; another purpose is refused by the one resend guard;
    after the guard, a reset code replaces the login code, which then no longer logs in."""
    mobile = fresh_mobile()
    await add_user(client, mobile)
    login_code = await code_for(client, sandbox, mobile, "login", "b0")
    assert (await reset(client, mobile, login_code))["errno"] == "4004"
    assert (await ask_code(client, mobile, "reset_password", "b1"))["data"]["reason"] == (
        "resend_interval"
    )
    await pass_resend_interval(client, mobile)
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
async def test_sms_login_with_one_code_from_two_tabs_logs_in_once(client, sandbox, fresh_mobile):
    await check_one_code_logs_in_once(client, sandbox, fresh_mobile)


async def check_one_code_logs_in_once(client, sandbox, fresh_mobile) -> None:
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


# --- password reset ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_reset_password_ends_every_session_and_logs_the_caller_in(
    client, sandbox, fresh_mobile
):
    await check_reset_ends_every_session(client, sandbox, fresh_mobile)


async def check_reset_ends_every_session(client, sandbox, fresh_mobile) -> None:
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
async def test_concurrent_resets_with_one_code_one_wins(client, sandbox, fresh_mobile):
    await check_concurrent_resets_one_wins(client, sandbox, fresh_mobile)


async def check_concurrent_resets_one_wins(client, sandbox, fresh_mobile) -> None:
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
    client, sandbox, fresh_mobile
):
    await check_change_mobile(client, sandbox, fresh_mobile)


async def check_change_mobile(client, sandbox, fresh_mobile) -> None:
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
async def test_concurrent_changes_to_one_number_one_wins(client, sandbox, fresh_mobile):
    await check_concurrent_changes_one_wins(client, sandbox, fresh_mobile)


async def check_concurrent_changes_one_wins(client, sandbox, fresh_mobile) -> None:
    """Two users claim one number at once, both with the right code: one account gets it."""
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
