"""The SMS-code flow: CAPTCHA → resend guard → registered? → code → Ronglian, with rollback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets

from services import keys
from services.captcha import CaptchaService, check_captcha_params
from services.config import SmsConfig
from services.errors import Ret, ServiceError
from services.ronglian import RonglianClient
from services.users import UserRepository
from services.validation import is_mobile, mask_mobile

log = logging.getLogger(__name__)

# Reserve the mobile for one send: set the resend guard only if absent (so of any number of
# concurrent requests exactly one passes) and store the new code's HMAC with a fresh attempt
# counter in the same atomic step. Both keys share the {mobile} hash tag (Redis Cluster).
RESERVE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], 'mac', ARGV[3], 'tries', 0)
    redis.call('EXPIRE', KEYS[2], ARGV[4])
    return -1
end
return redis.call('PTTL', KEYS[1])
"""

# Undo a reservation whose SMS was not sent, touching only the values this request wrote.
RELEASE_SCRIPT = """
local removed = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then removed = removed + redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], 'mac') == ARGV[2] then
    removed = removed + redis.call('DEL', KEYS[2])
end
return removed
"""

# Check a submitted code and count the attempt in one atomic step, so concurrent guesses can
# neither exceed the attempt limit nor both use a right code. Returns {outcome, detail}:
# outcome 0 = no code, 1 = right (code deleted, detail = its remaining ms), 2 = wrong,
# 3 = wrong and the code destroyed (limit reached).
VERIFY_SCRIPT = """
local mac = redis.call('HGET', KEYS[1], 'mac')
if not mac then return {0, 0} end
if mac == ARGV[1] then
    local ms_left = redis.call('PTTL', KEYS[1])
    redis.call('DEL', KEYS[1])
    return {1, ms_left}
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
    return {3, tries}
end
return {2, tries}
"""

# Put back a code that was used for a registration the database then failed to store.
RESTORE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('HSET', KEYS[1], 'mac', ARGV[1], 'tries', 0)
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
"""


class SmsCodeService:
    """Sends verification codes by SMS, at most one per mobile per resend interval."""

    def __init__(
        self,
        redis,
        captchas: CaptchaService,
        users: UserRepository,
        ronglian: RonglianClient,
        config: SmsConfig,
        hmac_key: str,
        max_attempts: int,
    ) -> None:
        self._captchas = captchas
        self._users = users
        self._ronglian = ronglian
        self._config = config
        self._hmac_key = hmac_key.encode()
        self._max_attempts = max_attempts
        self._reserve = redis.register_script(RESERVE_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._verify = redis.register_script(VERIFY_SCRIPT)
        self._restore = redis.register_script(RESTORE_SCRIPT)

    def _mac(self, mobile: str, code: str) -> str:
        # Codes at rest are HMACs: a Redis dump or MONITOR does not reveal a usable code.
        return hmac.new(self._hmac_key, f"{mobile}:{code}".encode(), hashlib.sha256).hexdigest()

    async def send_code(self, mobile: object, image_code: object, image_code_id: object) -> int:
        """Check the CAPTCHA and send a new code to mobile (ihome's order of checks).

        Returns the seconds until the mobile may be sent another code.
        """
        if not (mobile and image_code and image_code_id):
            raise ServiceError(Ret.PARAMERR, "参数不完整")
        if not is_mobile(mobile):
            raise ServiceError(Ret.PARAMERR, "手机号格式错误")
        image_code_id, image_code = check_captcha_params(image_code_id, image_code)
        await self._captchas.consume(image_code_id, image_code)

        code = f"{secrets.randbelow(1_000_000):06d}"
        guard_token = secrets.token_hex(8)
        mac = self._mac(mobile, code)
        await self._reserve_mobile(mobile, guard_token, mac)
        try:
            if await self._users.mobile_exists(mobile):
                raise ServiceError(Ret.DATAEXIST, "手机号已注册")
            minutes = str(max(1, self._config.code_ttl // 60))
            await self._ronglian.send_template_sms(
                mobile, [code, minutes], self._config.template_id
            )
        except BaseException:
            # Nothing was sent: free the mobile at once so the user can retry.
            await asyncio.shield(self._undo_reservation(mobile, guard_token, mac))
            raise
        return self._config.resend_interval

    async def check_code(self, mobile: str, code: str) -> int:
        """Consume a right code (returns its remaining ms, for restore_code) or raise."""
        outcome, detail = await self._verify(
            keys=[keys.sms_code_key(mobile)], args=[self._mac(mobile, code), self._max_attempts]
        )
        if outcome == 1:
            return int(detail)
        if outcome == 0:
            raise ServiceError(Ret.NODATA, "短信验证码失效，请重新获取")
        if outcome == 3:
            raise ServiceError(Ret.DATAERR, "短信验证码错误次数过多，请重新获取")
        left = self._max_attempts - int(detail)
        raise ServiceError(Ret.DATAERR, f"短信验证码错误，还可尝试{left}次")

    async def restore_code(self, mobile: str, code: str, ms_left: int) -> None:
        """Undo check_code after a failure that was not the user's (e.g. the database)."""
        if ms_left > 0:
            await self._restore(
                keys=[keys.sms_code_key(mobile)], args=[self._mac(mobile, code), ms_left]
            )

    async def _reserve_mobile(self, mobile: str, guard_token: str, mac: str) -> None:
        ms_left = await self._reserve(
            keys=[keys.sms_guard_key(mobile), keys.sms_code_key(mobile)],
            args=[guard_token, self._config.resend_interval, mac, self._config.code_ttl],
        )
        if ms_left == -1:
            return
        # PTTL is -1 for a guard without expiry (never written by us): report the full interval.
        seconds = math.ceil(ms_left / 1000) if ms_left > 0 else self._config.resend_interval
        raise ServiceError(Ret.REQERR, f"请求过于频繁，请{seconds}秒后重试", retry_after=seconds)

    async def _undo_reservation(self, mobile: str, guard_token: str, mac: str) -> None:
        try:
            await self._release(
                keys=[keys.sms_guard_key(mobile), keys.sms_code_key(mobile)],
                args=[guard_token, mac],
            )
        except Exception:
            # Redis failed mid-request: the guard expires by itself within the interval.
            log.warning("could not release the SMS reservation of %s", mask_mobile(mobile))
