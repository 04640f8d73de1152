"""Flows the tests share: get a CAPTCHA, ask for a code, read it from the sandbox's inbox,
register a user. Test modules import these from here, never from each other."""

from __future__ import annotations

import argon2

from services import keys
from services.sms import Purpose, SentCode

PASSWORD = "s3cret-pass"
NEW_PASSWORD = "n3w-secret-pass"
# For users made directly in the table: hashing once per session keeps the tests fast.
PASSWORD_HASH = argon2.PasswordHasher().hash(PASSWORD)

# --- the services, without HTTP (tests/services/) ------------------------------------------

CLIENT_IP = "192.0.2.10"  # TEST-NET-1: a client address no real one collides with


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
