"""The SMS-code flow: CAPTCHA → resend guard → registered? → code → Ronglian, with rollback."""

from __future__ import annotations

import asyncio
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
# concurrent requests exactly one passes) and store the new code in the same atomic step.
# Both keys share the {mobile} hash tag, so this also runs on Redis Cluster.
RESERVE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
    return -1
end
return redis.call('PTTL', KEYS[1])
"""

# Undo a reservation whose SMS was not sent, touching only the values this request wrote.
RELEASE_SCRIPT = """
local removed = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then removed = removed + redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[2] then removed = removed + redis.call('DEL', KEYS[2]) end
return removed
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
    ) -> None:
        self._captchas = captchas
        self._users = users
        self._ronglian = ronglian
        self._config = config
        self._reserve = redis.register_script(RESERVE_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)

    async def send_code(self, mobile: object, image_code: object, image_code_id: object) -> None:
        """Check the CAPTCHA and send a new code to mobile (ihome's order of checks)."""
        if not (mobile and image_code and image_code_id):
            raise ServiceError(Ret.PARAMERR, "参数不完整")
        if not is_mobile(mobile):
            raise ServiceError(Ret.PARAMERR, "手机号格式错误")
        image_code_id, image_code = check_captcha_params(image_code_id, image_code)
        await self._captchas.consume(image_code_id, image_code)

        code = f"{secrets.randbelow(1_000_000):06d}"
        guard_token = secrets.token_hex(8)
        await self._reserve_mobile(mobile, guard_token, code)
        try:
            if await self._users.mobile_exists(mobile):
                raise ServiceError(Ret.DATAEXIST, "手机号已注册")
            minutes = str(max(1, self._config.code_ttl // 60))
            await self._ronglian.send_template_sms(
                mobile, [code, minutes], self._config.template_id
            )
        except BaseException:
            # Nothing was sent: free the mobile at once so the user can retry.
            await asyncio.shield(self._undo_reservation(mobile, guard_token, code))
            raise

    async def _reserve_mobile(self, mobile: str, guard_token: str, code: str) -> None:
        ms_left = await self._reserve(
            keys=[keys.sms_guard_key(mobile), keys.sms_code_key(mobile)],
            args=[guard_token, self._config.resend_interval, code, self._config.code_ttl],
        )
        if ms_left == -1:
            return
        # PTTL is -1 for a guard without expiry (never written by us): report the full interval.
        seconds = math.ceil(ms_left / 1000) if ms_left > 0 else self._config.resend_interval
        raise ServiceError(Ret.REQERR, f"请求过于频繁，请{seconds}秒后重试", retry_after=seconds)

    async def _undo_reservation(self, mobile: str, guard_token: str, code: str) -> None:
        try:
            await self._release(
                keys=[keys.sms_guard_key(mobile), keys.sms_code_key(mobile)],
                args=[guard_token, code],
            )
        except Exception:
            # Redis failed mid-request: the guard expires by itself within the interval.
            log.warning("could not release the SMS reservation of %s", mask_mobile(mobile))
