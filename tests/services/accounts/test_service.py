"""AccountService without HTTP, on real Redis and MariaDB: register, log in (password or SMS
code), sessions, password change and reset, change of mobile. Codes come by SMS through the
real Ronglian client and the sandbox."""

from __future__ import annotations

import asyncio

import pytest

from services.codes.purposes import Purpose
from services.errors import Ret
from tests.flows import (
    BAD_REGISTER_FORMS,
    CLIENT_IP,
    NEW_PASSWORD,
    PASSWORD,
    PASSWORD_HASH,
    code_by_sms,
    outcome,
    pass_resend_interval,
    refusal,
    wrong,
)
from tests.users_sql import delete_user

OTHER_IP = "198.51.100.7"


async def user_count(services, mobile: str) -> int:
    return await services.users.count(mobile=mobile)


async def registered(services, sandbox, mobile: str, **extra):
    """A user registered the way a person does it: a code by SMS, then register()."""
    code = await code_by_sms(services, sandbox, mobile, captcha_id="reg")
    return await services.accounts.register(mobile, code, PASSWORD, PASSWORD, **extra)


async def signed_in(services, mobile: str, sessions: int = 1):
    """A user made in the table, with `sessions` sessions open (two browsers, say)."""
    user = await services.users.create(mobile, mobile, PASSWORD_HASH)
    return user, [await services.sessions.create(user) for _ in range(sessions)]


async def logged_out(services, session_ids: list[str]) -> bool:
    """Every one of these sessions has ended."""
    return all([await services.sessions.get(each) is None for each in session_ids])


# --- register ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_register_creates_the_user_once_with_an_argon2id_hash(
    services, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    user = await services.accounts.register(mobile, code, PASSWORD, PASSWORD)
    assert (user.name, user.mobile) == (mobile, mobile)
    assert user.password_hash.startswith("$argon2id$")
    again = await refusal(services.accounts.register(mobile, code, PASSWORD, PASSWORD))
    assert again.ret == Ret.NODATA  # the code was used up
    assert await user_count(services, mobile) == 1
    assert await services.accounts.login(mobile, PASSWORD, CLIENT_IP) == user


@pytest.mark.gen_test(timeout=30)
async def test_register_with_a_username_logs_in_by_it(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    user = await registered(services, sandbox, mobile, username="alice_01")
    assert user.name == "alice_01"
    found = await services.accounts.login("ALICE_01", PASSWORD, CLIENT_IP, by_username=True)
    assert found.user_id == user.user_id


@pytest.mark.parametrize(
    ("change", "errmsg"),
    [
        *BAD_REGISTER_FORMS,
        ({"username": "ab"}, "请输入5-20个字符的用户名"),
        ({"username": "13912345678"}, "用户名不能是他人的手机号"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_register_refuses_bad_input_and_keeps_the_code(
    services, sandbox, fresh_mobile, change, errmsg
):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    form = {"mobile": mobile, "sms_code": code, "password": PASSWORD, "password2": PASSWORD}
    refused = await refusal(services.accounts.register(**{**form, **change}))
    assert (refused.ret, refused.errmsg) == (Ret.PARAMERR, errmsg)
    assert await user_count(services, mobile) == 0
    await services.accounts.register(**form)  # the code still works


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_registrations_with_one_code_create_one_user(
    services, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    results = await asyncio.gather(
        *(outcome(services.accounts.register(mobile, code, PASSWORD, PASSWORD)) for _ in range(8))
    )
    assert sorted(results) == ["NODATA"] * 7 + ["ok"]
    assert await user_count(services, mobile) == 1


@pytest.mark.gen_test(timeout=30)
async def test_register_after_the_mobile_was_taken_is_dataexist(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    await services.users.create(mobile, mobile, PASSWORD_HASH)  # another process, meanwhile
    refused = await refusal(services.accounts.register(mobile, code, PASSWORD, PASSWORD))
    assert (refused.ret, refused.errmsg) == (Ret.DATAEXIST, "手机号已注册")
    assert await user_count(services, mobile) == 1


# --- password login ---------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_wrong_password_unknown_mobile_and_overlong_password_get_one_answer(
    services, fresh_mobile
):
    mobile = fresh_mobile()
    await services.users.create(mobile, mobile, PASSWORD_HASH)
    answers = [
        await refusal(services.accounts.login(account, password, CLIENT_IP))
        for account, password in [
            (mobile, "nope-nope"),
            (fresh_mobile(), PASSWORD),
            (mobile, "x" * 65),
        ]
    ]
    assert {(each.ret, each.errmsg) for each in answers} == {(Ret.DATAERR, "用户名或密码错误")}


@pytest.mark.gen_test(timeout=60)
async def test_guessing_from_one_address_stops_there_and_the_owner_still_logs_in(
    make_services, fresh_mobile
):
    services = await make_services(accounts={"login_max_failures": 3})
    mobile = fresh_mobile()
    user = await services.users.create(mobile, mobile, PASSWORD_HASH)
    for _ in range(3):
        assert (await refusal(services.accounts.login(mobile, "wrong-one", CLIENT_IP))).ret == (
            Ret.DATAERR
        )
    blocked = await refusal(services.accounts.login(mobile, PASSWORD, CLIENT_IP))
    assert blocked.ret == Ret.REQERR and blocked.data["reason"] == "login_account_ip"
    assert 590 <= blocked.retry_after <= 600
    assert await services.accounts.login(mobile, PASSWORD, OTHER_IP) == user  # no lockout


@pytest.mark.gen_test(timeout=60)
async def test_successful_logins_are_not_counted_as_failures(make_services, fresh_mobile):
    services = await make_services(accounts={"login_max_failures": 2})
    mobile = fresh_mobile()
    await services.users.create(mobile, mobile, PASSWORD_HASH)
    for _ in range(4):
        await services.accounts.login(mobile, PASSWORD, CLIENT_IP)


# --- sessions and the password ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_password_change_ends_every_session(services, fresh_mobile):
    user, sessions = await signed_in(services, fresh_mobile(), sessions=2)
    assert (await services.accounts.session_user(sessions[0])).user_id == user.user_id
    await services.accounts.change_password(user.user_id, NEW_PASSWORD)
    assert await logged_out(services, sessions)
    refused = await refusal(services.accounts.session_user(sessions[1]))
    assert refused.ret == Ret.SESSIONERR
    assert (await refusal(services.accounts.login(user.mobile, PASSWORD, CLIENT_IP))).ret == (
        Ret.DATAERR
    )
    await services.accounts.login(user.mobile, NEW_PASSWORD, CLIENT_IP)


@pytest.mark.parametrize(("password", "ret"), [("short", Ret.PARAMERR), ("", Ret.PARAMERR)])
@pytest.mark.gen_test(timeout=30)
async def test_a_refused_password_change_changes_nothing(services, fresh_mobile, password, ret):
    user, sessions = await signed_in(services, fresh_mobile())
    assert (await refusal(services.accounts.change_password(user.user_id, password))).ret == ret
    assert (await services.accounts.session_user(sessions[0])).user_id == user.user_id
    await services.accounts.login(user.mobile, PASSWORD, CLIENT_IP)


@pytest.mark.gen_test(timeout=30)
async def test_the_session_of_a_deleted_user_ends_when_asked_for(services, fresh_mobile):
    user, [session] = await signed_in(services, fresh_mobile())
    await delete_user(services, user.mobile)
    assert (await refusal(services.accounts.session_user(session))).ret == Ret.SESSIONERR
    assert await services.sessions.get(session) is None
    assert (await refusal(services.accounts.session_user(None))).ret == Ret.SESSIONERR


@pytest.mark.gen_test(timeout=30)
async def test_reset_sets_the_password_and_ends_every_session(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    user, sessions = await signed_in(services, mobile, sessions=2)
    code = await code_by_sms(services, sandbox, mobile, Purpose.RESET_PASSWORD)
    reset = await services.accounts.reset_password(mobile, code, NEW_PASSWORD, NEW_PASSWORD)
    assert reset.user_id == user.user_id
    assert await logged_out(services, sessions)
    await services.accounts.login(mobile, NEW_PASSWORD, CLIENT_IP)
    again = await refusal(services.accounts.reset_password(mobile, code, PASSWORD, PASSWORD))
    assert again.ret == Ret.NODATA


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_resets_with_one_code_one_wins(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await signed_in(services, mobile)
    code = await code_by_sms(services, sandbox, mobile, Purpose.RESET_PASSWORD)
    passwords = [f"new-pass-{i}" for i in range(5)]
    results = await asyncio.gather(
        *(outcome(services.accounts.reset_password(mobile, code, p, p)) for p in passwords)
    )
    assert sorted(results) == ["NODATA"] * 4 + ["ok"]
    winner = passwords[results.index("ok")]
    await services.accounts.login(mobile, winner, CLIENT_IP)


# --- SMS login --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_login_code_logs_in_once_even_from_two_tabs(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    await signed_in(services, mobile, sessions=0)
    code = await code_by_sms(services, sandbox, mobile, Purpose.LOGIN)
    results = await asyncio.gather(
        *(outcome(services.accounts.login_with_code(mobile, code, CLIENT_IP)) for _ in range(2))
    )
    assert sorted(results) == ["NODATA", "ok"]


@pytest.mark.gen_test(timeout=60)
async def test_wrong_login_codes_count_as_failed_logins(make_services, sandbox, fresh_mobile):
    services = await make_services(accounts={"login_max_failures": 2})
    mobile = fresh_mobile()
    await signed_in(services, mobile, sessions=0)
    code = await code_by_sms(services, sandbox, mobile, Purpose.LOGIN)
    for step in (1, 2):
        guess = wrong(code, step)
        refused = await refusal(services.accounts.login_with_code(mobile, guess, CLIENT_IP))
        assert refused.ret == Ret.DATAERR
    blocked = await refusal(services.accounts.login_with_code(mobile, code, CLIENT_IP))
    assert blocked.data["reason"] == "login_account_ip"
    user = await services.accounts.login_with_code(mobile, code, OTHER_IP)  # the code survived
    assert user.mobile == mobile


# --- change of mobile -------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_change_mobile_moves_the_account_tells_the_old_number_and_ends_sessions(
    services, sandbox, fresh_mobile
):
    old, new = fresh_mobile(), fresh_mobile()
    user, sessions = await signed_in(services, old, sessions=2)
    code = await code_by_sms(services, sandbox, new, Purpose.CHANGE_MOBILE, user_id=user.user_id)
    moved = await services.mobile_changes.change(
        user.user_id, new, code, CLIENT_IP, password=PASSWORD
    )
    assert (moved.user_id, moved.mobile, moved.name) == (user.user_id, new, new)
    assert await logged_out(services, sessions)
    [notice] = sandbox.inbox(old)
    assert notice["templateId"] == "2" and notice["datas"] == [f"{new[:3]}****{new[-4:]}"]
    await services.accounts.login(new, PASSWORD, CLIENT_IP)
    assert await user_count(services, old) == 0


@pytest.mark.gen_test(timeout=60)
async def test_two_users_claiming_one_number_at_once_one_gets_it(services, sandbox, fresh_mobile):
    target = fresh_mobile()
    users = [(await signed_in(services, fresh_mobile(), sessions=0))[0] for _ in range(2)]
    code = await code_by_sms(
        services, sandbox, target, Purpose.CHANGE_MOBILE, user_id=users[0].user_id
    )
    results = await asyncio.gather(
        *(
            outcome(
                services.mobile_changes.change(
                    u.user_id, target, code, CLIENT_IP, password=PASSWORD
                )
            )
            for u in users
        )
    )
    assert sorted(results) == ["NODATA", "ok"]
    assert await user_count(services, target) == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_change_code_for_a_number_taken_meanwhile_changes_nothing(
    services, sandbox, fresh_mobile
):
    old, new = fresh_mobile(), fresh_mobile()
    user, [session] = await signed_in(services, old)
    code = await code_by_sms(services, sandbox, new, Purpose.CHANGE_MOBILE, user_id=user.user_id)
    await services.users.create("someone_else", new, PASSWORD_HASH)
    refused = await refusal(
        services.mobile_changes.change(user.user_id, new, code, CLIENT_IP, password=PASSWORD)
    )
    assert (refused.ret, refused.errmsg) == (Ret.DATAEXIST, "手机号已注册")
    assert (await services.users.by_id(user.user_id)).mobile == old
    assert await services.sessions.get(session) is not None  # still logged in
    assert sandbox.inbox(old) == []


# --- lookups as you type -------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_counting_mobiles_and_names_is_limited_per_address(make_services, fresh_mobile):
    services = await make_services(limits={"count_per_ip_minute": 3})
    mobile = fresh_mobile()
    await services.users.create("bob_the_user", mobile, PASSWORD_HASH)
    assert await services.accounts.count_mobile(mobile, CLIENT_IP) == 1
    assert await services.accounts.count_mobile(fresh_mobile(), CLIENT_IP) == 0
    assert await services.accounts.count_username("bob_the_user", CLIENT_IP) == 1
    refused = await refusal(services.accounts.count_username("bob_the_user", CLIENT_IP))
    assert refused.data["reason"] == "count_ip_minute"  # one budget for both lookups
    assert await services.accounts.count_mobile(mobile, OTHER_IP) == 1
    bad = await refusal(services.accounts.count_mobile("12345", CLIENT_IP))
    assert bad.ret == Ret.PARAMERR


@pytest.mark.gen_test(timeout=30)
async def test_a_second_code_needs_the_resend_interval_whatever_the_purpose(
    services, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    await signed_in(services, mobile, sessions=0)
    await code_by_sms(services, sandbox, mobile, Purpose.LOGIN, captcha_id="a")
    refused = await refusal(code_by_sms(services, sandbox, mobile, Purpose.RESET_PASSWORD))
    assert refused.data["reason"] == "resend_interval"
    await pass_resend_interval(services.redis, mobile)
    sandbox.clear()
    code = await code_by_sms(services, sandbox, mobile, Purpose.RESET_PASSWORD, captcha_id="b")
    await services.accounts.reset_password(mobile, code, NEW_PASSWORD, NEW_PASSWORD)
