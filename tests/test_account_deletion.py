"""Account deletion, 注销 (issue 23 item 2): DELETE /api/v1.0/user with a `delete_account` code
sent to the account's own number and the password; a cooling-off period in which a login
cancels it; the purge (python -m tools.accounts purge) anonymises the account and frees its
mobile and name. Tests taking mode_client also run on a Redis Cluster (sessions are touched).
No test waits for time to pass: the purge takes its time from an injected clock (--now)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys

import pytest

from services.accounts.consent import utc_now
from services.accounts.deletion_purge import DeletionPurger
from tests.conftest import ROOT
from tests.flows import (
    PASSWORD,
    add_user,
    another_browser,
    code_for,
    last_code,
    logged_in_as,
    pass_resend_interval,
    password_login,
    post,
    sms_login,
    wrong,
)

DAY = datetime.timedelta(days=1)


async def ask_delete_code(client, sandbox, mobile: str, captcha_id: str = "d", **extra) -> str:
    """A delete_account code: no mobile in the request, it goes to the account's own number."""
    text = await client.new_captcha(captcha_id)
    body = {"image_code": text, "image_code_id": captcha_id, "purpose": "delete_account", **extra}
    answer = await post(client, "/api/v1.0/sms_codes", body)
    assert answer["errno"] == "0", answer
    return last_code(sandbox, mobile)


async def next_sms_allowed(client, sandbox, mobile: str) -> None:
    """Stand-in for waiting out our resend interval and the sandbox's 30-second rule."""
    await pass_resend_interval(client.app.services.redis, mobile)
    sandbox.clear()


async def delete_account(client, body) -> dict:
    headers = {**await client.xsrf_headers(), "Content-Type": "application/json"}
    response = await client.fetch(
        "/api/v1.0/user",
        "DELETE",
        body if isinstance(body, str) else json.dumps(body),
        headers,
        allow_nonstandard_methods=True,
    )
    assert response.code == 200, response.body
    return json.loads(response.body)


async def logged_in_user(client, mobile: str):
    user = await add_user(client, mobile)
    assert (await password_login(client, mobile))["errno"] == "0"
    return user


async def deletion_row(client, user_id: int):
    return await client.app.services.db.fetch_one(
        "SELECT status, requested_at, purge_after FROM ih_account_deletion WHERE user_id = %s",
        (user_id,),
    )


def purger(client, now: datetime.datetime) -> DeletionPurger:
    services = client.app.services
    # As python -m tools.accounts purge builds it: numbers released leave the set first.
    return DeletionPurger(
        services.db,
        services.sessions,
        services.config.deletion,
        lambda: now,
        registered=services.users.registered,
    )


@pytest.mark.gen_test(timeout=90)
async def test_deletion_ends_every_session_and_the_purge_frees_mobile_and_name(
    mode_client, sandbox, fresh_mobile
):
    client, mobile = mode_client, fresh_mobile()
    user = await logged_in_user(client, mobile)
    other = another_browser(client)
    assert (await password_login(other, mobile))["errno"] == "0"
    code = await ask_delete_code(client, sandbox, mobile)
    before = utc_now().replace(microsecond=0)

    answer = await delete_account(client, {"sms_code": code, "password": PASSWORD})
    assert answer["errno"] == "0" and answer["errmsg"] == "注销申请已提交"
    requested = datetime.datetime.fromisoformat(answer["data"]["requested_at"].rstrip("Z"))
    purge_after = datetime.datetime.fromisoformat(answer["data"]["purge_after"].rstrip("Z"))
    assert before <= requested <= utc_now() and purge_after - requested == 15 * DAY
    # Every session ends at once, on every device.
    assert await logged_in_as(client) is None and await logged_in_as(other) is None
    assert (await deletion_row(client, user.user_id))[0] == "pending"

    # Not due yet: the purge leaves it; due: it completes it, once.
    assert (
        await purger(client, purge_after - datetime.timedelta(seconds=1)).purge()
    ).completed == 0
    assert (await purger(client, purge_after).purge()).completed == 1
    assert (await purger(client, purge_after + DAY).purge()).completed == 0  # idempotent
    assert (await deletion_row(client, user.user_id))[0] == "done"
    row = await client.app.services.db.fetch_one(
        "SELECT name, mobile, password_hash FROM ih_user_profile WHERE id = %s", (user.user_id,)
    )
    assert mobile not in row and row[2] == "!"
    assert (await password_login(client, mobile))["errno"] == "4004"  # gone
    # The mobile and the name are free again: a new account takes both (the sandbox's
    # 30-second rule per number forbids a second SMS this soon: created directly).
    again = await add_user(client, mobile)
    assert again.user_id != user.user_id and again.name == mobile
    assert (await password_login(client, mobile))["errno"] == "0"


@pytest.mark.gen_test(timeout=90)
async def test_a_login_in_the_cooling_off_period_cancels_the_deletion_and_says_so(
    mode_client, sandbox, fresh_mobile
):
    client, mobile = mode_client, fresh_mobile()
    user = await logged_in_user(client, mobile)
    code = await ask_delete_code(client, sandbox, mobile)
    assert (await delete_account(client, {"sms_code": code, "password": PASSWORD}))["errno"] == "0"

    answer = await password_login(client, mobile)
    assert answer == {
        "errno": "0",
        "errmsg": "登录成功，账号注销申请已取消",
        "data": {"deletion_cancelled": True},
    }
    assert (await deletion_row(client, user.user_id))[0] == "cancelled"
    assert await logged_in_as(client) == mobile
    assert (await purger(client, utc_now() + 30 * DAY).purge()).completed == 0
    assert await password_login(client, mobile) == {"errno": "0", "errmsg": "登录成功"}

    # Asked for again, the deletion is pending again with a new period; an SMS login
    # cancels it as well.
    await next_sms_allowed(client, sandbox, mobile)
    code = await ask_delete_code(client, sandbox, mobile, "d2")
    assert (await delete_account(client, {"sms_code": code, "password": PASSWORD}))["errno"] == "0"
    assert (await deletion_row(client, user.user_id))[0] == "pending"
    await next_sms_allowed(client, sandbox, mobile)
    login_code = await code_for(client, sandbox, mobile, "login", "l")
    assert (await sms_login(client, mobile, login_code))["data"] == {"deletion_cancelled": True}


@pytest.mark.gen_test(timeout=90)
async def test_each_bad_request_is_refused_and_changes_nothing(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    user = await logged_in_user(client, mobile)
    stranger = another_browser(client)
    code = await ask_delete_code(client, sandbox, mobile)
    right = {"sms_code": code, "password": PASSWORD}
    for body, errno, errmsg in [
        ({}, "4103", "参数不完整"),
        ({"sms_code": code}, "4103", "参数不完整"),
        ({"password": PASSWORD}, "4103", "参数不完整"),
        ({**right, "sms_code": 123456}, "4103", "参数不完整"),
        ({**right, "sms_code": "12ab56"}, "4103", "短信验证码应为6位数字"),
        ({**right, "password": "wrong-password"}, "4106", "密码错误"),
        ({**right, "password": "x" * 65}, "4106", "密码错误"),
        ("[1, 2", "4103", "请求体不是合法的JSON"),
        ("[]", "4103", "请求体必须是JSON对象"),
    ]:
        answer = await delete_account(client, body)
        assert (answer["errno"], answer["errmsg"]) == (errno, errmsg), body
    assert (await delete_account(stranger, right))["errno"] == "4101"  # no session
    # A wrong code counts as one of its tries; the right one still works afterwards.
    assert (await delete_account(client, {**right, "sms_code": wrong(code)}))["errno"] == "4004"
    # Nothing changed: no deletion, the session lives.
    assert await deletion_row(client, user.user_id) is None
    assert await logged_in_as(client) == mobile
    assert (await delete_account(client, right))["errno"] == "0"


@pytest.mark.gen_test(timeout=90)
async def test_a_code_of_another_purpose_or_number_does_not_delete(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    user = await logged_in_user(client, mobile)
    text = await client.new_captcha("x")
    named = {"mobile": fresh_mobile(), "image_code": text, "image_code_id": "x"}
    refused = await post(client, "/api/v1.0/sms_codes", {**named, "purpose": "delete_account"})
    assert refused["errno"] == "4103"  # the code goes to the account's number, never another
    confirm = await code_for(client, sandbox, mobile, "reset_password", "r")
    answer = await delete_account(client, {"sms_code": confirm, "password": PASSWORD})
    assert answer["errno"] != "0"
    assert await deletion_row(client, user.user_id) is None


@pytest.mark.gen_test(timeout=90)
async def test_two_deletions_at_once_one_passes(mode_client, sandbox, fresh_mobile):
    client, mobile = mode_client, fresh_mobile()
    user = await logged_in_user(client, mobile)
    other = another_browser(client)
    assert (await password_login(other, mobile))["errno"] == "0"
    code = await ask_delete_code(client, sandbox, mobile)
    body = {"sms_code": code, "password": PASSWORD}
    answers = await asyncio.gather(delete_account(client, body), delete_account(other, body))
    assert sorted(a["errno"] for a in answers)[0] == "0"
    assert [a["errno"] for a in answers].count("0") == 1, answers
    rows = await client.app.services.db.fetch_one(
        "SELECT COUNT(*) FROM ih_account_deletion WHERE user_id = %s", (user.user_id,)
    )
    assert rows[0] == 1 and (await deletion_row(client, user.user_id))[0] == "pending"


@pytest.mark.gen_test(timeout=90)
async def test_deletion_during_a_login_leaves_no_session_with_a_pending_deletion(
    mode_client, sandbox, fresh_mobile
):
    """Both orders of the two steps that matter, forced: the login's session made before the
    deletion is recorded, and its check after (or before) it."""
    client = mode_client
    services = client.app.services
    deletions, sessions = services.deletions, services.sessions

    async def request(user) -> None:  # what the route does after the two factors are proven
        await deletions._record_request(user.user_id)
        await sessions.end_all(user.user_id)

    # 1. The login checks first (nothing pending), the deletion comes after: its end_all
    #    ends the login's session; the deletion stays pending.
    user = await add_user(client, fresh_mobile())
    session_id = await sessions.create(user)
    assert await deletions.after_login(user.user_id) is False
    await request(user)
    assert await sessions.get(session_id) is None
    assert await deletions.pending(user.user_id) is not None

    # 2. The deletion is recorded between the login's session and its check: the check
    #    cancels it (the login answer says so) and the session may live.
    user = await add_user(client, fresh_mobile())
    session_id = await sessions.create(user)
    await request(user)
    assert await deletions.after_login(user.user_id) is True
    assert await deletions.pending(user.user_id) is None

    # 3. Concurrently over HTTP, several times: afterwards, never a pending deletion with a
    #    live session.
    for attempt in range(3):
        mobile = fresh_mobile()
        user = await logged_in_user(client, mobile)
        login_browser = another_browser(client)
        await login_browser.xsrf_headers()
        code = await ask_delete_code(client, sandbox, mobile, f"c{attempt}")
        deleted, login = await asyncio.gather(
            delete_account(client, {"sms_code": code, "password": PASSWORD}),
            password_login(login_browser, mobile),
        )
        assert deleted["errno"] == "0" and login["errno"] == "0"
        pending = await deletions.pending(user.user_id)
        alive = await logged_in_as(login_browser)
        assert not (pending is not None and alive), "a session outlived a pending deletion"
        if pending is None:
            assert login["data"] == {"deletion_cancelled": True}


@pytest.mark.gen_test(timeout=90)
async def test_several_purge_runs_at_once_complete_each_deletion_once(client, fresh_mobile):
    services = client.app.services
    users = [await add_user(client, fresh_mobile()) for _ in range(12)]
    for user in users:
        await services.deletions._record_request(user.user_id)
    later = utc_now() + 16 * DAY
    runs = [purger(client, later) for _ in range(4)]
    reports = await asyncio.gather(*(run.purge() for run in runs))
    assert sum(report.completed for report in reports) == 12
    row = await services.db.fetch_one(
        "SELECT COUNT(*) FROM ih_account_deletion WHERE status = 'done'"
    )
    assert row[0] == 12


@pytest.mark.gen_test(timeout=90)
async def test_a_purge_run_that_died_is_taken_over_after_the_lease(client, fresh_mobile):
    services = client.app.services
    user = await add_user(client, fresh_mobile())
    await services.deletions._record_request(user.user_id)
    due = utc_now() + 16 * DAY
    dead = purger(client, due)
    assert await dead._claim("dead-run") == [user.user_id]  # claimed, never completed
    assert (await purger(client, due + datetime.timedelta(seconds=60)).purge()).completed == 0
    lease = datetime.timedelta(seconds=services.config.deletion.claim_lease)
    assert (await purger(client, due + lease).purge()).completed == 1
    assert await dead.complete(user.user_id, "dead-run") == 0  # its claim is gone


@pytest.mark.gen_test(timeout=90)
async def test_a_login_while_the_purge_completes_the_account_is_refused(mode_client, fresh_mobile):
    client, mobile = mode_client, fresh_mobile()
    services = client.app.services
    user = await add_user(client, mobile)
    await services.deletions._record_request(user.user_id)
    assert await purger(client, utc_now() + 16 * DAY)._claim("run") == [user.user_id]
    answer = await password_login(client, mobile)
    assert answer == {"errno": "4104", "errmsg": "账号已注销"}
    assert await logged_in_as(client) is None  # the session it made is gone


async def run_tool(config, *args: str) -> tuple[int, str]:
    """python -m tools.accounts against this test's MySQL and Redis."""
    env = {
        **os.environ,
        "SMSREG_MYSQL_PORT": str(config.mysql.port),
        "SMSREG_REDIS_URL": config.redis.url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.accounts", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, output.decode()


@pytest.mark.gen_test(timeout=120)
async def test_the_purge_command_with_an_injected_clock(client, config, fresh_mobile):
    services = client.app.services
    user = await add_user(client, fresh_mobile())
    pending = await services.deletions._record_request(user.user_id)
    assert await run_tool(config, "purge", "--now", pending.purge_after.isoformat()) == (
        0,
        "purged 1 account(s)\n",
    )
    assert await run_tool(config, "purge", "--now", pending.purge_after.isoformat()) == (
        0,
        "purged 0 account(s)\n",
    )
    code, output = await run_tool(config, "purge", "--now", "tomorrow")
    assert code == 2 and "not an ISO 8601 time" in output
