"""Flows the tests share: get a CAPTCHA, ask for a code, read it from the sandbox's inbox,
register a user. Test modules import these from here, never from each other."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
import uuid

import argon2

from services.accounts.mobiles import canonical_mobile
from services.codes.purposes import Purpose
from services.codes.sms import SentCode
from services.errors import ServiceError
from services.store import keys
from tests.conftest import ROOT, Client

PASSWORD = "s3cret-pass"
NEW_PASSWORD = "n3w-secret-pass"
# For users made directly in the table: hashing once per session keeps the tests fast.
PASSWORD_HASH = argon2.PasswordHasher().hash(PASSWORD)

# --- the services, without HTTP (tests/services/) ------------------------------------------

CLIENT_IP = "192.0.2.10"  # TEST-NET-1: a client address no real one collides with
# fraud settings for tests that trip a breaker in a handful of requests; the proof of work is
# cheap (at most 20 tries) so that solving it costs the test nothing.
FRAUD_FOR_TESTS = {
    "min_sends": 5,
    "min_conversion_percent": 20,
    "elevated_sends": 3,
    "cooldown": 600,
    "budget_share_newcomer": 1.0,
    "budget_share_poor": 1.0,
    "pow_cost": 1,
    "pow_max_counter": 20,
}

# Registration forms a user can get wrong, each with the error it gets (PARAMERR): changes to a
# right form (mobile, sms_code, password, password2).
BAD_REGISTER_FORMS = [
    ({"mobile": ""}, "参数不完整"),
    ({"sms_code": None}, "参数不完整"),
    ({"password2": 123456}, "参数不完整"),
    ({"mobile": "12345678901"}, "手机号格式错误"),
    ({"password2": "different"}, "两次密码不一致"),
    ({"password": "12345", "password2": "12345"}, "密码长度应为6-64位"),
    ({"password": "x" * 65, "password2": "x" * 65}, "密码长度应为6-64位"),
    ({"sms_code": "12ab56"}, "短信验证码应为6位数字"),
]


async def refusal(call) -> ServiceError:
    """The ServiceError a service call raises (it must raise one)."""
    try:
        await call
    except ServiceError as refused:
        return refused
    raise AssertionError("the call was not refused")


async def outcome(call, *, by_reason: bool = False) -> str:
    """ "ok", or the name of the RET a call was refused with (to count the results of a race);
    with by_reason, a refusal that names its reason (every limit does) answers that instead."""
    try:
        await call
    except ServiceError as refused:
        reason = refused.data.get("reason") if by_reason else None
        return str(reason) if reason else refused.ret.name
    return "ok"


async def solved_captcha(services, captcha_id: str = "svc", client_ip: str = CLIENT_IP) -> str:
    """A CAPTCHA issued as a page asks for one, and its answer (read by its documented key)."""
    await services.captchas.create(captcha_id, client_ip, requester="svc-test")
    return await services.redis.get(keys.captcha_key(captcha_id))


async def send_code(
    services,
    mobile: str,
    purpose: Purpose = Purpose.REGISTER,
    *,
    captcha_id: str = "svc",
    client_ip: str = CLIENT_IP,
    **options: object,
) -> SentCode:
    """SmsCodeService.send_code with a freshly solved CAPTCHA."""
    answer = await solved_captcha(services, captcha_id, client_ip)
    return await services.sms.send_code(
        mobile, answer, captcha_id, client_ip, purpose=purpose, **options
    )


def last_code(sandbox, mobile: str) -> str:
    """The code of the newest SMS the sandbox accepted for mobile."""
    return sandbox.inbox(mobile)[-1]["datas"][0]


async def code_by_sms(services, sandbox, mobile: str, purpose=Purpose.REGISTER, **options) -> str:
    """Send a code for `purpose` and read it from the phone (the sandbox's inbox)."""
    await send_code(services, mobile, purpose, **options)
    return last_code(sandbox, mobile)


def wrong(code: str, step: int = 1) -> str:
    """Another six-digit code."""
    return f"{(int(code) + step) % 1_000_000:06d}"


async def pass_resend_interval(redis, mobile: str) -> None:
    """Stand-in for waiting out sms.resend_interval: the resend guard expires."""
    await redis.delete(keys.sms_guard_key(mobile))


async def sms_keys_of(redis, mobile: str) -> dict[str, object]:
    """What Redis holds for one mobile's codes: guard, code, hourly and daily counts (a count
    given back to 0 and one never taken are the same to a user)."""
    return {
        "guard": await redis.get(keys.sms_guard_key(mobile)),
        "code": await redis.hgetall(keys.sms_code_key(mobile)),
        "hourly": int(await redis.get(keys.sms_mobile_hourly_key(mobile)) or 0),
        "daily": int(await redis.get(keys.sms_mobile_daily_key(mobile)) or 0),
    }


# --- the ihome JSON API over HTTP (tests/conftest.py Client) -------------------------------


async def post(client, path: str, body: dict, headers: dict | None = None) -> dict:
    """A JSON POST with the XSRF header, as the ihome front-end sends it."""
    return await client.json(path, "POST", body, {**await client.xsrf_headers(), **(headers or {})})


async def send_with_new_captcha(client, mobile: str, captcha_id: str) -> dict:
    """GET /api/v1.0/sms_codes/<mobile> with a freshly solved CAPTCHA; the JSON answer."""
    text = await client.new_captcha(captcha_id)
    return await client.send_sms(mobile, text, captcha_id)


async def send(client, mobile: str, captcha_id: str, headers: dict | None = None):
    """One SMS request with a fresh CAPTCHA; returns (HTTP response, JSON body)."""
    text = await client.new_captcha(captcha_id)
    response = await client.fetch(
        f"/api/v1.0/sms_codes/{mobile}?image_code={text}&image_code_id={captcha_id}",
        headers=headers,
    )
    return response, json.loads(response.body)


async def request_code(client, sandbox, mobile: str, captcha_id: str = "reg") -> str:
    """Ask for a register code over HTTP and read it from the sandbox's inbox."""
    assert (await send_with_new_captcha(client, mobile, captcha_id))["errno"] == "0"
    return last_code(sandbox, mobile)


async def register(client, mobile: str, code: str, password: str = PASSWORD, **extra) -> dict:
    body = {"mobile": mobile, "sms_code": code, "password": password, "password2": password}
    return await post(client, "/api/v1.0/users", {**body, **extra})


async def user_rows(client, mobile: str) -> int:
    row = await client.app.services.db.fetch_one(
        "SELECT COUNT(*) FROM ih_user_profile WHERE mobile = %s", (mobile,)
    )
    return row[0]


def assert_refusal(response, body, reason: str, low: int, high: int) -> None:
    """A limit's refusal: REQERR naming it, with the seconds left in the body and Retry-After."""
    assert response.code == 200
    assert body["errno"] == "4201"
    assert body["data"]["reason"] == reason
    assert low <= body["data"]["retry_after"] <= high
    assert response.headers["Retry-After"] == str(body["data"]["retry_after"])
    assert f"{body['data']['retry_after']}秒" in body["errmsg"]


async def assert_nothing_stored(client, mobile: str) -> None:
    redis = client.app.services.redis
    assert not await redis.exists(keys.sms_guard_key(mobile), keys.sms_code_key(mobile))


# --- the phone account over HTTP: purposes, SMS login, reset, change of mobile -------------


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
    return last_code(sandbox, canonical_mobile(mobile))


async def sms_login(client, mobile: str, code: str) -> dict:
    return await post(client, "/api/v1.0/sessions", {"mobile": mobile, "sms_code": code})


async def password_login(client, mobile: str, password: str = PASSWORD) -> dict:
    return await post(client, "/api/v1.0/sessions", {"mobile": mobile, "password": password})


async def reset(client, mobile: str, code: str, password: str = NEW_PASSWORD) -> dict:
    body = {"mobile": mobile, "sms_code": code, "password": password, "password2": password}
    return await post(client, "/api/v1.0/password_reset", body)


async def change_mobile(client, mobile: str, code: str, factor: dict | None = None) -> dict:
    """PUT /api/v1.0/user/mobile with the new number's code and `factor`, the proof of the
    current one (default: the password; {} for none)."""
    factor = {"password": PASSWORD} if factor is None else factor
    body = {"mobile": mobile, "sms_code": code, **factor}
    return await client.json("/api/v1.0/user/mobile", "PUT", body, await client.xsrf_headers())


async def logged_in_as(client) -> str | None:
    answer = await client.json("/api/v1.0/session")
    return answer["data"]["name"] if answer["errno"] == "0" else None


def another_browser(client) -> Client:
    """A second client of the same server, with its own cookies."""
    return Client(client.base_url, client.app)


async def mobile_of(client, user_id: int) -> str:
    row = await client.app.services.db.fetch_one(
        "SELECT mobile, name FROM ih_user_profile WHERE id = %s", (user_id,)
    )
    return row[0]


# --- the meiduo and news front-ends' own requests -----------------------------------------

FAMILY_PASSWORD = "abc12345xyz"  # fits meiduo's ^[0-9A-Za-z]{8,20}$ too


def form_body(fields: dict[str, str]) -> str:
    return urllib.parse.urlencode(fields)


class MeiduoClient:
    """Speaks like meiduo's register.js / login.html: axios GETs and native form posts."""

    def __init__(self, client) -> None:
        self.client = client

    async def image(self) -> tuple[str, str]:
        image_uuid = str(uuid.uuid4())
        response = await self.client.fetch(f"/image_codes/{image_uuid}/")
        assert response.code == 200 and response.headers["Content-Type"] == "image/jpeg"
        text = await self.client.app.services.redis.get(f"image_code:{image_uuid}")
        return image_uuid, text

    async def get_json(self, path: str) -> dict:
        response = await self.client.fetch(path)
        assert response.code == 200
        return json.loads(response.body)

    async def sms(self, mobile: str, image_code: str, image_uuid: str) -> dict:
        query = urllib.parse.urlencode({"image_code": image_code, "uuid": image_uuid})
        return await self.get_json(f"/sms_codes/{mobile}/?{query}")

    async def post_form(self, path: str, fields: dict[str, str]):
        fields = {"csrfmiddlewaretoken": self.client.cookies["csrftoken"], **fields}
        return await self.client.fetch(
            path,
            "POST",
            form_body(fields),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )


class NewsClient:
    """Speaks like the news site's main.js: JSON posts with X-CSRFToken from csrf_token."""

    def __init__(self, client) -> None:
        self.client = client

    async def image(self) -> tuple[str, str]:
        image_id = str(uuid.uuid4())
        response = await self.client.fetch(f"/passport/image_code?imageCodeId={image_id}")
        assert response.code == 200 and response.headers["Content-Type"] == "image/jpeg"
        return image_id, await self.client.app.services.redis.get(f"image_code:{image_id}")

    async def post(self, path: str, body: dict) -> dict:
        headers = {"X-CSRFToken": self.client.cookies["csrf_token"]}
        return await self.client.json(path, "POST", body, headers)


# --- operations ------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:{{(.*)}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            total += float(match.group(2))
    return total


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python server.py ARGS` to its end (a start-up that must fail), output captured."""
    return subprocess.run(
        [sys.executable, "server.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
