"""Login floods (issue 27 item 8): a bound on password hashes in flight, and a CAPTCHA for every
password login while failures spike everywhere (docs/SECURITY.md, "Login floods").

A credential-stuffing botnet sends each guess for another account from another address, so no
per-account or per-address counter of the login throttle applies, and each guess costs an
argon2id verification. The bound is tested by holding its places, and the executor, with a
hash job the test controls (no timing); the spike by moving the rolling count's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.parse

import pytest

from tests.conftest import serving
from tests.flows import PASSWORD, add_user, post, register, request_code
from tests.polling import async_wait_until

WRONG = "wrong-pass-123"
PROXY = {"security": {"trusted_proxies": "127.0.0.0/8"}}
BUSY = "服务繁忙，请{}秒后重试"


async def login(client, mobile: str, password: str, ip: str, **extra) -> dict:
    """ihome's password login from `ip` (through the trusted proxy): the JSON answer."""
    body = {"mobile": mobile, "password": password, **extra}
    return await post(client, "/api/v1.0/sessions", body, {"X-Forwarded-For": ip})


async def raw_login(client, path: str, body: dict, ip: str):
    """A JSON login (ihome or news) from `ip`: the HTTP response."""
    headers = {**await client.xsrf_headers(), "X-Forwarded-For": ip}
    return await client.fetch(path, "POST", body, headers)


async def meiduo_login(client, username: str, password: str, ip: str):
    """meiduo's form login from `ip`: the HTTP response."""
    if "csrftoken" not in client.cookies:
        await client.fetch("/image_codes/00000000-0000-0000-0000-000000000000/")
    fields = {"csrfmiddlewaretoken": client.cookies["csrftoken"]}
    fields |= {"username": username, "password": password}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": ip}
    return await client.fetch("/login/", "POST", urllib.parse.urlencode(fields), headers)


def assert_overloaded(response, body: dict, code_key: str = "errno", code: str = "4201") -> None:
    """HTTP 503 at once, Retry-After, the family's REQERR with reason overloaded."""
    assert response.code == 503, response.body
    seconds = int(response.headers["Retry-After"])
    assert body[code_key] == code and body["errmsg"] == BUSY.format(seconds)
    reason = body.get("data", body)["reason"]
    assert reason == "overloaded"


async def login_keys(client) -> list[str]:
    """Every login counter in Redis (the throttle's and the global rate's)."""
    return sorted(await client.app.services.redis.keys("login:*"))


@pytest.mark.gen_test(timeout=120)
async def test_a_login_beyond_the_hash_bound_is_refused_at_once(make_app, fresh_mobile):
    # One executor thread and three places: the test's blocked hash job holds the thread and
    # one place, two logins the other two places (queued behind the job).
    app = await make_app(
        **PROXY, server={"executor_workers": 1}, accounts={"max_hashes_in_flight": 3}
    )
    async with serving(app) as client:
        owner, guessed = fresh_mobile(), fresh_mobile()
        await add_user(client, owner)
        await add_user(client, guessed)
        await client.xsrf_headers()  # its CAPTCHA image is rendered in the executor too
        await meiduo_login(client, "warm_up", WRONG, "192.0.2.1")  # meiduo's cookie, a decoy
        hasher = app.services.accounts.hasher
        release = threading.Event()
        try:
            with hasher.place() as place:
                blocker = asyncio.ensure_future(hasher.run(place, release.wait))
                queued = [
                    asyncio.ensure_future(login(client, guessed, WRONG, "203.0.113.1")),
                    asyncio.ensure_future(login(client, owner, PASSWORD, "203.0.113.2")),
                ]

                async def places_taken() -> int:
                    return hasher.in_flight

                await async_wait_until(
                    places_taken, lambda n: n == 3, what="both logins waiting for their hash"
                )
                counted = await login_keys(client)
                # Every family's login is refused at once, in its own shape, while the only
                # executor thread is still held: no hash was computed or queued for them. Six
                # from one address on one account: more than its pair limit (5), had they counted.
                for _ in range(3):
                    response = await raw_login(
                        client,
                        "/api/v1.0/sessions",
                        {"mobile": owner, "password": PASSWORD},
                        "198.51.100.9",
                    )
                    assert_overloaded(response, json.loads(response.body))
                    response = await raw_login(
                        client,
                        "/passport/login",
                        {"mobile": owner, "passport": PASSWORD},
                        "198.51.100.9",
                    )
                    assert_overloaded(response, json.loads(response.body))
                response = await meiduo_login(client, owner, PASSWORD, "198.51.100.9")
                assert response.code == 503 and response.headers["Retry-After"]
                assert response.body.decode().startswith("服务繁忙")
                assert not any(task.done() for task in queued)  # still waiting for the executor
                assert await login_keys(client) == counted  # the refused ones counted nothing
        finally:
            release.set()  # never leave the executor blocked (its shutdown waits)
        await blocker
        assert [(await task)["errno"] for task in queued] == ["4004", "0"]
        # Refusals are no failed guesses: from the same address, in at once, no CAPTCHA.
        assert (await login(client, owner, PASSWORD, "198.51.100.9"))["errno"] == "0"
        assert app.services.accounts.hasher.in_flight == 0


@pytest.mark.gen_test(timeout=120)
async def test_registration_refused_by_the_bound_keeps_its_code(make_app, sandbox, fresh_mobile):
    # No hashing place frees within paid_hash_wait: refused, the code given back.
    app = await make_app(accounts={"max_hashes_in_flight": 1, "paid_hash_wait": 0.2})
    async with serving(app) as client:
        mobile = fresh_mobile()
        code = await request_code(client, sandbox, mobile)
        with app.services.accounts.hasher.place():
            refused = await register(client, mobile, code)
            assert refused["errno"] == "4201" and refused["data"]["reason"] == "overloaded"
        # The code was not used: the same request, repeated, registers.
        assert (await register(client, mobile, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=120)
async def test_a_paid_registration_waits_for_a_hashing_place_ahead_of_logins(
    make_app, sandbox, fresh_mobile
):
    """Issue 26 goal 3: a registration whose code checked out has paid for an SMS. While every
    hashing place is taken (a login flood) it waits for the next one freed instead of a 503;
    logins meanwhile are refused at once, and a wrong code never waits."""
    app = await make_app(**PROXY, accounts={"max_hashes_in_flight": 1})
    assert app.services.config.accounts.paid_hash_wait == 10.0  # the shipped wait
    async with serving(app) as client:
        mobile, owner = fresh_mobile(), fresh_mobile()
        await add_user(client, owner)
        code = await request_code(client, sandbox, mobile)
        hasher = app.services.accounts.hasher
        with contextlib.ExitStack() as held:
            held.enter_context(hasher.place())  # the flood's hash, in flight
            wrong = "000000" if code != "000000" else "111111"
            answer = await register(client, mobile, wrong)
            assert answer["errno"] == "4004"  # a wrong code is answered at once, never queued
            assert hasher.waiting == 0
            paid = asyncio.ensure_future(register(client, mobile, code))

            async def waiting() -> int:
                return hasher.waiting

            await async_wait_until(waiting, lambda n: n == 1, what="the registration waiting")
            # A login now is refused at once: the paid registration goes first.
            refused = await raw_login(
                client, "/api/v1.0/sessions", {"mobile": owner, "password": PASSWORD}, "192.0.2.8"
            )
            assert_overloaded(refused, json.loads(refused.body))
            assert not paid.done()
        # The flood's hash ends: its place goes to the registration.
        assert (await paid)["errno"] == "0"
        assert hasher.in_flight == 0 and hasher.waiting == 0
        assert (await login(client, owner, PASSWORD, "192.0.2.8"))["errno"] == "0"


async def solved(client, captcha_id: str) -> dict:
    return {"image_code": await client.new_captcha(captcha_id), "image_code_id": captcha_id}


@pytest.mark.gen_test(timeout=120)
async def test_a_spike_of_failures_everywhere_asks_every_login_for_a_captcha(
    make_app, fresh_mobile
):
    app = await make_app(**PROXY, accounts={"login_global_captcha_after": 3})
    rate = app.services.accounts.throttle.rate
    now = 1_800_000_000.0
    rate.clock = lambda: now
    async with serving(app) as client:
        owner = fresh_mobile()
        await add_user(client, owner)
        # Credential stuffing: each guess another account, another address.
        for i in range(3):
            assert (await login(client, fresh_mobile(), WRONG, f"203.0.113.{i}"))["errno"] == "4004"
        # Every password login now needs a CAPTCHA: the owner's, of an untouched account, with
        # the right password, from a clean address; the same ask as the account threshold's.
        answer = await login(client, owner, PASSWORD, "198.51.100.1")
        assert answer["errno"] == "4201" and answer["errmsg"] == "请先输入图片验证码"
        assert answer["data"] == {"reason": "captcha_required"}
        # A wrong CAPTCHA does not pass; a solved one lets the owner in during the spike.
        wrong = {"image_code": "ZZZZ", "image_code_id": "spike-0"}
        await client.new_captcha("spike-0")
        assert (await login(client, owner, PASSWORD, "198.51.100.1", **wrong))["errno"] == "4004"
        guess = await solved(client, "spike-1")
        assert (await login(client, owner, PASSWORD, "198.51.100.1", **guess))["errno"] == "0"
        # The flood goes on without CAPTCHAs: refused, and still counted, so it stays on.
        for i in range(10, 14):
            answer = await login(client, fresh_mobile(), WRONG, f"203.0.113.{i}")
            assert answer["data"]["reason"] == "captcha_required"
        now += 59  # within the window: still on
        assert (await login(client, owner, PASSWORD, "198.51.100.1"))["errno"] == "4201"
        now += 60  # a whole window without failures: off again
        assert (await login(client, owner, PASSWORD, "198.51.100.1"))["errno"] == "0"


@pytest.mark.gen_test(timeout=120)
async def test_one_address_cannot_switch_the_challenge_on_for_everyone(make_app, fresh_mobile):
    app = await make_app(
        **PROXY, accounts={"login_global_captcha_after": 3, "login_ip_max_failures": 2}
    )
    async with serving(app) as client:
        owner = fresh_mobile()
        await add_user(client, owner)
        answers = [await login(client, fresh_mobile(), WRONG, "203.0.113.7") for _ in range(8)]
        assert [a["errno"] for a in answers] == ["4004"] * 2 + ["4201"] * 6
        assert {a["data"]["reason"] for a in answers[2:]} == {"login_ip"}
        # Only the two attempts within the address's limit counted: below the threshold.
        assert (await login(client, owner, PASSWORD, "198.51.100.2"))["errno"] == "0"


@pytest.mark.gen_test(timeout=300)
async def test_shipped_settings_bound_hashes_and_challenge_a_flood(make_app, fresh_mobile):
    """The shipped config.yml: 8 hashes in flight per process, 30 failures a minute."""
    app = await make_app(**PROXY)
    config = app.services.config.accounts
    assert (config.max_hashes_in_flight, config.login_global_captcha_after) == (8, 30)
    async with serving(app) as client:
        owner = fresh_mobile()
        await add_user(client, owner)
        hasher = app.services.accounts.hasher
        with contextlib.ExitStack() as places:
            for _ in range(8):
                places.enter_context(hasher.place())
            answer = await login(client, owner, PASSWORD, "198.51.100.3")
            assert answer["data"]["reason"] == "overloaded"
        assert (await login(client, owner, PASSWORD, "198.51.100.3"))["errno"] == "0"
        # 30 guesses, each for another account from another address: then the challenge.
        for i in range(30):
            ip = f"203.0.{113 + i // 250}.{i % 250}"
            assert (await login(client, fresh_mobile(), WRONG, ip))["errno"] == "4004"
        answer = await login(client, owner, PASSWORD, "198.51.100.3")
        assert answer["data"] == {"reason": "captcha_required"}
        guess = await solved(client, "shipped")
        assert (await login(client, owner, PASSWORD, "198.51.100.3", **guess))["errno"] == "0"
