"""Changing the password while logged in: PUT /api/v1.0/user/password (issue 23 item 3).
Tests taking mode_client also run on a Redis Cluster."""

from __future__ import annotations

import asyncio

import pytest

from tests.flows import (
    NEW_PASSWORD,
    PASSWORD,
    add_user,
    another_browser,
    logged_in_as,
    password_login,
)

ROUTE = "/api/v1.0/user/password"


async def change(client, old: str | None = PASSWORD, new: str = NEW_PASSWORD, **extra) -> dict:
    body = {"old_password": old, "password": new, "password2": new, **extra}
    return await client.json(ROUTE, "PUT", body, await client.xsrf_headers())


async def logged_in_user(client, mobile: str):
    user = await add_user(client, mobile)
    assert (await password_login(client, mobile))["errno"] == "0"
    return user


def copy_of(client):
    """Another tab of the same browser: the same cookies."""
    tab = another_browser(client)
    tab.cookies = dict(client.cookies)
    return tab


@pytest.mark.gen_test(timeout=60)
async def test_change_keeps_this_browser_renewed_and_ends_every_other(mode_client, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    await logged_in_user(client, mobile)
    phone = another_browser(client)
    assert (await password_login(phone, mobile))["errno"] == "0"
    before = client.cookies["session"]

    assert await change(client) == {"errno": "0", "errmsg": "密码已修改"}
    assert await logged_in_as(client) == mobile
    assert client.cookies["session"] != before  # a new session, not the old one kept
    assert await logged_in_as(phone) is None
    probe = another_browser(client)
    assert (await password_login(probe, mobile))["errno"] == "4004"
    assert (await password_login(probe, mobile, NEW_PASSWORD))["errno"] == "0"


@pytest.mark.parametrize(
    ("body", "errno", "errmsg"),
    [
        ({"old_password": PASSWORD, "password": NEW_PASSWORD}, "4103", "参数不完整"),
        (
            {"old_password": PASSWORD, "password": NEW_PASSWORD, "password2": "other-456"},
            "4103",
            "两次密码不一致",
        ),
        ({"old_password": PASSWORD, "password": "12345", "password2": "12345"}, "4103", None),
        (
            {"old_password": "wrong-pass", "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
            "4106",
            "原密码错误",
        ),
        (
            {"old_password": "x" * 65, "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
            "4106",
            "原密码错误",
        ),
        (
            {"old_password": ["a"], "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
            "4103",
            None,
        ),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_bad_input_is_refused_and_changes_nothing(client, fresh_mobile, body, errno, errmsg):
    mobile = fresh_mobile()
    await logged_in_user(client, mobile)
    phone = another_browser(client)
    assert (await password_login(phone, mobile))["errno"] == "0"
    answer = await client.json(ROUTE, "PUT", body, await client.xsrf_headers())
    assert answer["errno"] == errno, answer
    if errmsg:
        assert answer["errmsg"] == errmsg
    assert await logged_in_as(client) == mobile
    assert await logged_in_as(phone) == mobile
    assert (await password_login(another_browser(client), mobile))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_not_json_and_not_logged_in(client, fresh_mobile):
    stranger = another_browser(client)
    assert await change(stranger) == {"errno": "4101", "errmsg": "用户未登录"}
    await logged_in_user(client, fresh_mobile())
    answer = await client.json(ROUTE, "PUT", "not json", await client.xsrf_headers())
    assert answer == {"errno": "4103", "errmsg": "请求体不是合法的JSON"}


@pytest.mark.gen_test(timeout=60)
async def test_a_wrong_old_password_counts_as_a_login_guess(client, fresh_mobile):
    mobile = fresh_mobile()
    await logged_in_user(client, mobile)
    failures = client.app.services.config.accounts.login_max_failures
    for _ in range(failures):
        assert (await change(client, "guess-guess"))["errno"] == "4106"
    throttled = await change(client)
    assert throttled["errno"] == "4201"
    assert throttled["data"]["reason"] == "login_account_ip"
    # The same counters as a login: no more guesses from this address by logging in.
    assert (await password_login(another_browser(client), mobile))["errno"] == "4201"


@pytest.mark.gen_test(timeout=60)
async def test_two_tabs_changing_at_once_one_wins(mode_client, fresh_mobile):
    client = mode_client
    mobile = fresh_mobile()
    await logged_in_user(client, mobile)
    tabs = [copy_of(client) for _ in range(4)]
    for tab in tabs:
        await tab.xsrf_headers()
    passwords = [f"password-{i}" for i in range(len(tabs))]
    answers = await asyncio.gather(
        *(change(tab, PASSWORD, new) for tab, new in zip(tabs, passwords, strict=True))
    )
    errnos = [answer["errno"] for answer in answers]
    assert errnos.count("0") == 1, answers
    # The others: the password changed under them (4004), their old password no longer
    # right (4106), or their session already ended by the winner (4101).
    assert set(errnos) - {"0"} <= {"4004", "4106", "4101"}, answers
    winner = passwords[errnos.index("0")]
    for new in passwords:
        probe = another_browser(client)
        expected = "0" if new == winner else "4004"
        assert (await password_login(probe, mobile, new))["errno"] == expected
    assert await logged_in_as(tabs[errnos.index("0")]) == mobile
