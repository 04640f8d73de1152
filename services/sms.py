"""The SMS-code flow: CAPTCHA → limits → registered? → code → Ronglian, with rollback."""

from __future__ import annotations

import asyncio
import datetime
import enum
import hashlib
import hmac
import logging
import secrets
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services import keys
from services.captcha import CaptchaService, captcha_refusal, check_captcha_params
from services.config import LimitsConfig, SmsConfig, VoiceConfig, clock_time
from services.errors import Ret, ServiceError
from services.fraud import Admission, FraudGuard
from services.limits import Limit, RateLimiter
from services.mobiles import canonical_mobile
from services.providers.base import Channel, CodeMessage, Delivery, Outcome, ProviderError
from services.providers.failover import FailoverSender
from services.receipts import ReceiptStore
from services.redisclient import RedisClient
from services.ronglian import RonglianClient
from services.users import UserRepository
from services.validation import mask_mobile

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
SEND_UNKNOWN_MESSAGE = "短信发送结果未知，如未收到，请稍后重新获取"

# Reserve the mobile for one send, atomically: refuse while the resend guard exists or an
# hourly/daily cap is reached; otherwise set the guard (so of any number of concurrent
# requests exactly one passes), count the send, and store the new code's HMAC with a fresh
# attempt counter. All keys share the {mobile} hash tag, so this also runs on Redis Cluster.
# KEYS: guard, code, hourly count, daily count. ARGV: guard token, interval, mac, code ttl,
# hourly limit, hour, daily limit, day. Returns {0, 0} or {refusal (1 guard, 2 hourly,
# 3 daily), ms until it lifts}.
RESERVE_SCRIPT = """
local ms_left = redis.call('PTTL', KEYS[1])
if ms_left ~= -2 then
    if ms_left < 0 then ms_left = tonumber(ARGV[2]) * 1000 end
    return {1, ms_left}
end
for i = 3, 4 do
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used >= tonumber(ARGV[2 * i - 1]) then
        ms_left = redis.call('PTTL', KEYS[i])
        if ms_left < 0 then ms_left = tonumber(ARGV[2 * i]) * 1000 end
        return {i - 1, ms_left}
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'mac', ARGV[3], 'tries', 0)
redis.call('EXPIRE', KEYS[2], ARGV[4])
for i = 3, 4 do
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[2 * i]) end
end
return {0, 0}
"""

# Undo a reservation whose SMS was not sent, touching only the values this request wrote,
# and give back its place in the hourly and daily counts.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], 'mac') == ARGV[2] then redis.call('DEL', KEYS[2]) end
for i = 3, 4 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECR', KEYS[i]) end
end
return 0
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


# Standalone Redis only (in a cluster these keys live in different slots): the CAPTCHA check
# and every limit of one send in a single round trip, with the same order and effects as the
# step-by-step path: consume the CAPTCHA, then refuse on the first full limit, else take them
# all and store the code. KEYS: captcha, ip count, guard, code, hourly, daily, global count.
# ARGV: answer (upper case), ip limit, ip window, guard token, interval, mac, code ttl,
# hourly limit, hour, daily limit, day, global limit, global window.
# Returns {0, 0}, or {1 CAPTCHA gone | 2 CAPTCHA wrong | 3 ip | 4 guard | 5 hourly | 6 daily
# | 7 global, ms until the limit lifts}.
RESERVE_ALL_SCRIPT = """
local stored = redis.call('GETDEL', KEYS[1])
if not stored then return {1, 0} end
if string.upper(stored) ~= ARGV[1] then return {2, 0} end
local function full(key, limit, window)
    local used = tonumber(redis.call('GET', key) or '0')
    if used >= tonumber(limit) then
        local ms_left = redis.call('PTTL', key)
        if ms_left < 0 then ms_left = tonumber(window) * 1000 end
        return ms_left
    end
    return nil
end
local ms_left = full(KEYS[2], ARGV[2], ARGV[3])
if ms_left then return {3, ms_left} end
ms_left = redis.call('PTTL', KEYS[3])
if ms_left ~= -2 then
    if ms_left < 0 then ms_left = tonumber(ARGV[5]) * 1000 end
    return {4, ms_left}
end
local counters = {{5, ARGV[8], ARGV[9], 5}, {6, ARGV[10], ARGV[11], 6}, {7, ARGV[12], ARGV[13], 7}}
for _, c in ipairs(counters) do
    ms_left = full(KEYS[c[1]], c[2], c[3])
    if ms_left then return {c[4], ms_left} end
end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'mac', ARGV[6], 'tries', 0)
redis.call('EXPIRE', KEYS[4], ARGV[7])
for _, c in ipairs({{2, ARGV[3]}, {5, ARGV[9]}, {6, ARGV[11]}, {7, ARGV[13]}}) do
    if redis.call('INCR', KEYS[c[1]]) == 1 then redis.call('EXPIRE', KEYS[c[1]], c[2]) end
end
return {0, 0}
"""


ALL_STEPS = 3
CHANNELS = {channel.value: channel for channel in Channel}


def quiet_seconds_left(now: datetime.datetime, start: datetime.time, end: datetime.time) -> int:
    """Seconds until the quiet hours [start, end) end if `now` (local time) is in them, else 0.

    The window may cross midnight (22:00-07:30); start == end means no quiet hours.
    """
    if start == end:
        return 0
    moment = now.time()
    inside = start <= moment < end if start < end else (moment >= start or moment < end)
    if not inside:
        return 0
    ends = datetime.datetime.combine(now.date(), end, tzinfo=now.tzinfo)
    if ends <= now:
        ends += datetime.timedelta(days=1)
    return max(1, int((ends - now).total_seconds()))


class Purpose(enum.Enum):
    """What a code may be used for. A code is bound to its mobile and its purpose."""

    REGISTER = "register"
    LOGIN = "login"
    RESET_PASSWORD = "reset_password"
    CHANGE_MOBILE = "change_mobile"

    @classmethod
    def parse(cls, value: object) -> Purpose:
        """The purpose a client asked for; absent means register (today's routes)."""
        if value is None or value == "":
            return cls.REGISTER
        try:
            return cls(value)
        except ValueError:
            raise ServiceError(Ret.PARAMERR, "验证码用途错误", field="purpose") from None


@dataclass(frozen=True)
class VerifiedCode:
    """A code that checked out and was consumed; give_back_code() puts it back."""

    mobile: str
    purpose: Purpose
    mac: str
    ms_left: int


@dataclass(frozen=True)
class SentCode:
    """A code on its way: when the mobile may ask again, and the id to follow its delivery."""

    retry_after: int
    send_id: str


@dataclass
class _Reservation:
    """What one send took, so that it can be given back if the SMS does not go out."""

    mobile: str
    ip_limit: Limit
    guard_token: str
    mac: str
    budget: Limit


class SmsCodeService:
    """Sends verification codes by SMS within the per-mobile, per-IP and global limits."""

    def __init__(
        self,
        redis: RedisClient,
        captchas: CaptchaService,
        users: UserRepository,
        sender: FailoverSender,
        limiter: RateLimiter,
        receipts: ReceiptStore,
        notices: RonglianClient,
        fraud: FraudGuard | None = None,
        *,
        sms: SmsConfig,
        limits: LimitsConfig,
        voice: VoiceConfig,
        code_hmac_key: str,
        max_code_attempts: int,
        one_round_trip: bool,
    ) -> None:
        self._fraud = fraud
        # Standalone Redis: one script for the whole check (one round trip per send).
        self._one_round_trip = one_round_trip
        self._captchas = captchas
        self._users = users
        self._sender = sender
        self._receipts = receipts
        self._notices = notices  # plain notifications (not codes): Ronglian templates
        self._limiter = limiter
        self._config = sms
        self._limits = limits
        self._hmac_key = code_hmac_key.encode()
        self._max_attempts = max_code_attempts
        self._reserve = redis.register_script(RESERVE_SCRIPT)
        self._reserve_all = redis.register_script(RESERVE_ALL_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._verify = redis.register_script(VERIFY_SCRIPT)
        self._restore = redis.register_script(RESTORE_SCRIPT)
        self._budget_alarm_until = 0.0
        self._quiet = (clock_time(voice.quiet_start), clock_time(voice.quiet_end))
        zone = zoneinfo.ZoneInfo(voice.timezone)
        # The wall clock for the voice quiet hours; tests replace it with a fixed time.
        self.clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(zone)
        self._redis = redis

    def _mac(self, mobile: str, purpose: Purpose, code: str) -> str:
        # Codes at rest are HMACs: a Redis dump or MONITOR does not reveal a usable code.
        # The purpose is part of the MAC, so a code sent for one purpose (say register) is
        # simply a wrong code for any other (say login or reset_password).
        message = f"{mobile}:{purpose.value}:{code}".encode()
        return hmac.new(self._hmac_key, message, hashlib.sha256).hexdigest()

    async def send_code(
        self,
        mobile: object,
        image_code: object,
        image_code_id: object,
        client_ip: str,
        channel: object = None,
        altcha: object = None,
        purpose: Purpose = Purpose.REGISTER,
        user_id: int | None = None,
    ) -> SentCode:
        """Check the CAPTCHA and the limits, then send a new code for `purpose` to mobile.

        `user_id` is the logged-in user (change_mobile needs one). One resend guard and one
        set of counts per mobile serve every purpose. Every refusal is decided before
        anything is sent or stored; a failed send leaves nothing behind. Returns the seconds
        until the mobile may be sent another code and the send's id (for
        GET /api/v1.0/sms_sends/<send_id>).
        `altcha` is a solved proof of work, needed only when a fraud segment of the request
        is elevated.
        """
        if not (mobile and image_code and image_code_id):
            raise ServiceError(Ret.PARAMERR, "参数不完整")
        canonical = canonical_mobile(mobile)
        if canonical is None:
            raise ServiceError(Ret.PARAMERR, "手机号格式错误", field="mobile")
        if purpose is Purpose.CHANGE_MOBILE and user_id is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        image_code_id, image_code = check_captcha_params(image_code_id, image_code)
        via = self._channel(channel)
        code = f"{secrets.randbelow(1_000_000):06d}"
        # Fraud segments first (before the CAPTCHA is used up, so that a request asked for a
        # proof of work can repeat itself with the same CAPTCHA); given back if a later limit
        # refuses or the send fails.
        admission = await self._admit_segments(canonical, client_ip, altcha)
        send = _Reservation(
            canonical,
            self._ip_limit(client_ip),
            secrets.token_hex(8),
            self._mac(canonical, purpose, code),
            self._global_limit(admission),
        )
        try:
            if self._one_round_trip:
                await self._reserve_in_one_step(send, image_code_id, image_code)
            else:
                await self._reserve_step_by_step(send, image_code_id, image_code)
        except BaseException:
            await asyncio.shield(self._release_segments(admission))
            raise
        try:
            await self._check_mobile_fits_purpose(canonical, purpose)
            minutes = max(1, self._config.code_ttl // 60)
            send_id = secrets.token_urlsafe(16)  # 128 random bits: unguessable
            delivery = await self._sender.send(
                CodeMessage(canonical, code, minutes, via, reference=send_id)
            )
        except ProviderError as failure:
            if failure.outcome is Outcome.UNKNOWN:
                # It may be on the phone: keep the guard, the code and every count, as for
                # a sent one, and tell the page to count down rather than invite a retry.
                raise ServiceError(
                    Ret.THIRDERR,
                    SEND_UNKNOWN_MESSAGE,
                    data={"reason": "send_unknown"},
                    retry_after=self._config.resend_interval,
                ) from None
            await asyncio.shield(self._undo(send, ALL_STEPS))
            raise
        except BaseException:
            # Nothing was sent: free the mobile at once so the user can retry, uncounted.
            await asyncio.shield(self._undo(send, ALL_STEPS))
            await asyncio.shield(self._release_segments(admission))
            raise
        await self._after_send(canonical, admission, send_id, delivery, send.guard_token)
        return SentCode(self._config.resend_interval, send_id)

    def _channel(self, channel: object) -> Channel:
        """sms (the default) or voice; voice calls are refused in the quiet hours."""
        if channel is None or channel == "":
            return Channel.SMS
        if not isinstance(channel, str) or channel not in CHANNELS:
            raise ServiceError(Ret.PARAMERR, "发送方式只能是sms或voice", field="channel")
        if CHANNELS[channel] is Channel.VOICE:
            seconds = quiet_seconds_left(self.clock(), *self._quiet)
            if seconds:
                raise ServiceError(
                    Ret.REQERR,
                    "夜间不拨打语音验证码，请使用短信验证码",
                    data={"reason": "voice_quiet_hours"},
                    retry_after=seconds,
                )
        return CHANNELS[channel]

    # --- fraud segments (services/fraud.py) -------------------------------------------------

    async def _admit_segments(
        self, mobile: str, client_ip: str, altcha: object
    ) -> Admission | None:
        if self._fraud is None:
            return None
        return await self._fraud.admit(mobile, client_ip, altcha)

    async def _release_segments(self, admission: Admission | None) -> None:
        if self._fraud is not None:
            await self._fraud.release(admission)

    async def _after_send(
        self,
        mobile: str,
        admission: Admission | None,
        send_id: str,
        delivery: Delivery,
        guard_token: str,
    ) -> None:
        """Record the send for its receipts and its segments for its conversion, and read the
        budget spent (to alert when it runs low): one round trip for all of it."""
        fraud = self._fraud if admission is not None else None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                self._receipts.record_sent(pipe, send_id, delivery, mobile, guard_token)
                if fraud is not None and admission is not None:
                    fraud.record_sent(pipe, mobile, admission, self._config.code_ttl)
                    pipe.get(keys.sms_global_hourly_key())
                results = await pipe.execute()
        except Exception as exc:
            # The SMS is out; a lost record only means no receipt or conversion for this code.
            log.warning("could not record send %s… (receipts, segments): %r", send_id[:6], exc)
            return
        if fraud is not None:
            fraud.budget_spent(int(results[-1] or 0), self._limits.sms_global_per_hour)

    async def _code_verified(self, mobile: str) -> None:
        """A right code converts the segments of the send that delivered it."""
        if self._fraud is None:
            return
        try:
            await self._fraud.converted(mobile)
        except Exception:
            log.warning("could not count a conversion")

    async def _check_mobile_fits_purpose(self, mobile: str, purpose: Purpose) -> None:
        """register and change_mobile need a free mobile; login and reset a registered one."""
        registered = await self._users.mobile_exists(mobile)
        if registered and purpose in (Purpose.REGISTER, Purpose.CHANGE_MOBILE):
            raise ServiceError(Ret.DATAEXIST, "手机号已注册", field="mobile")
        if not registered and purpose in (Purpose.LOGIN, Purpose.RESET_PASSWORD):
            raise ServiceError(Ret.USERERR, "用户不存在", field="mobile")

    async def verify_code(self, mobile: str, purpose: Purpose, code: str) -> VerifiedCode:
        """THE check of a submitted code, for every flow (register, login, reset, change).

        Consumes a right code, or counts a wrong try (the code is destroyed at the attempt
        limit) and raises. `mobile` must be canonical. A code sent for another purpose is a
        wrong code here. The single place where "a code was verified" happens.
        """
        mac = self._mac(mobile, purpose, code)
        outcome, detail = await self._verify(
            keys=[keys.sms_code_key(mobile)], args=[mac, self._max_attempts]
        )
        if outcome == 1:
            await self._code_verified(mobile)
            return VerifiedCode(mobile, purpose, mac, int(detail))
        if outcome == 0:
            raise ServiceError(Ret.NODATA, "短信验证码失效，请重新获取", field="sms_code")
        if outcome == 3:
            raise ServiceError(Ret.DATAERR, "短信验证码错误次数过多，请重新获取", field="sms_code")
        left = self._max_attempts - int(detail)
        raise ServiceError(Ret.DATAERR, f"短信验证码错误，还可尝试{left}次", field="sms_code")

    async def give_back_code(self, verified: VerifiedCode) -> None:
        """Undo verify_code after a failure that was not the user's (e.g. the database), so
        a retry needs no new SMS. A newer code sent meanwhile is left alone."""
        if verified.ms_left > 0:
            await self._restore(
                keys=[keys.sms_code_key(verified.mobile)], args=[verified.mac, verified.ms_left]
            )

    async def send_mobile_changed_notice(self, old_mobile: str, new_mobile: str) -> None:
        """Tell the old number that the account moved (a hijack gets noticed).

        A Ronglian notification template (sms.mobile_changed_template_id). Best effort after
        the change is committed: a failure is logged, not raised.
        """
        try:
            await self._notices.send_template_sms(
                old_mobile, [mask_mobile(new_mobile)], self._config.mobile_changed_template_id
            )
        except Exception:
            log.warning("mobile-changed notice to %s not sent", mask_mobile(old_mobile))

    def _ip_limit(self, client_ip: str) -> Limit:
        return Limit(
            keys.sms_ip_hourly_key(client_ip),
            self._limits.sms_per_ip_hour,
            HOUR,
            "ip_hourly",
            "当前网络发送短信次数过多，请{seconds}秒后重试",
        )

    def _global_limit(self, admission: Admission | None = None) -> Limit:
        budget = self._limits.sms_global_per_hour
        if self._fraud is not None and admission is not None:
            # Budget shedding: newcomers and poor segments may use only part of the budget,
            # so near the end of it only clients with a good record are still served.
            share = self._fraud.budget_share(admission.tier)
            if share < 1:
                return Limit(
                    keys.sms_global_hourly_key(),
                    max(1, int(budget * share)),
                    HOUR,
                    "budget_shed",
                    "短信服务繁忙，请{seconds}秒后重试",
                )
        return Limit(
            keys.sms_global_hourly_key(),
            budget,
            HOUR,
            "global_hourly",
            "短信服务繁忙，请{seconds}秒后重试",
        )

    def _mobile_limits(self, mobile: str) -> tuple[Limit, Limit, Limit]:
        return (
            Limit(
                keys.sms_guard_key(mobile),
                1,
                self._config.resend_interval,
                "resend_interval",
                "请求过于频繁，请{seconds}秒后重试",
            ),
            Limit(
                keys.sms_mobile_hourly_key(mobile),
                self._limits.sms_per_mobile_hour,
                HOUR,
                "mobile_hourly",
                "该手机号本小时获取验证码次数已达上限，请{seconds}秒后重试",
            ),
            Limit(
                keys.sms_mobile_daily_key(mobile),
                self._limits.sms_per_mobile_day,
                DAY,
                "mobile_daily",
                "该手机号今日获取验证码次数已达上限，请{seconds}秒后重试",
            ),
        )

    async def _reserve_in_one_step(
        self, send: _Reservation, image_code_id: str, image_code: str
    ) -> None:
        """Standalone Redis: CAPTCHA and all limits in one script (RESERVE_ALL_SCRIPT)."""
        guard, hourly, daily = self._mobile_limits(send.mobile)
        budget = send.budget
        refused, ms_left = await self._reserve_all(
            keys=[
                keys.captcha_key(image_code_id),
                send.ip_limit.key,
                guard.key,
                keys.sms_code_key(send.mobile),
                hourly.key,
                daily.key,
                budget.key,
            ],
            args=[
                image_code.upper(),
                send.ip_limit.limit,
                send.ip_limit.window,
                send.guard_token,
                guard.window,
                send.mac,
                self._config.code_ttl,
                hourly.limit,
                hourly.window,
                daily.limit,
                daily.window,
                budget.limit,
                budget.window,
            ],
        )
        if refused in (1, 2):
            raise captcha_refusal(expired=refused == 1)
        if refused == 7 and budget.reason == "global_hourly":
            self._budget_alarm(budget.refusal(ms_left))
        if refused:
            raise (send.ip_limit, guard, hourly, daily, budget)[refused - 3].refusal(ms_left)

    async def _reserve_step_by_step(
        self, send: _Reservation, image_code_id: str, image_code: str
    ) -> None:
        """Redis Cluster: the same checks in the same order, one hash slot at a time."""
        await self._captchas.consume(image_code_id, image_code)
        await self._limiter.take(send.ip_limit)
        steps_done = 1
        try:
            await self._reserve_mobile(send.mobile, send.guard_token, send.mac)
            steps_done = 2
            await self._take_global_budget(send.budget)
        except BaseException:
            await asyncio.shield(self._undo(send, steps_done))
            raise

    async def _undo(self, send: _Reservation, steps: int) -> None:
        """Undo the first `steps` reservation steps (IP, mobile, global budget), latest first."""
        actions: list[Callable[[], Awaitable[None]]] = [
            lambda: self._limiter.refund(send.ip_limit),
            lambda: self._release_mobile(send.mobile, send.guard_token, send.mac),
            lambda: self._limiter.refund(self._global_limit()),
        ]
        for action in reversed(actions[:steps]):
            try:
                await action()
            except Exception:
                # Redis failed mid-request: guards and counters expire by themselves.
                log.warning("could not undo an SMS reservation of %s", mask_mobile(send.mobile))

    async def _reserve_mobile(self, mobile: str, guard_token: str, mac: str) -> None:
        guard, hourly, daily = self._mobile_limits(mobile)
        refused, ms_left = await self._reserve(
            keys=[guard.key, keys.sms_code_key(mobile), hourly.key, daily.key],
            args=[
                guard_token,
                guard.window,
                mac,
                self._config.code_ttl,
                hourly.limit,
                hourly.window,
                daily.limit,
                daily.window,
            ],
        )
        if refused:
            raise (guard, hourly, daily)[refused - 1].refusal(ms_left)

    async def _release_mobile(self, mobile: str, guard_token: str, mac: str) -> None:
        guard, hourly, daily = self._mobile_limits(mobile)
        await self._release(
            keys=[guard.key, keys.sms_code_key(mobile), hourly.key, daily.key],
            args=[guard_token, mac],
        )

    async def _take_global_budget(self, budget: Limit) -> None:
        try:
            await self._limiter.take(budget)
        except ServiceError as refusal:
            if budget.reason == "global_hourly":
                self._budget_alarm(refusal)
            raise

    def _budget_alarm(self, refusal: ServiceError) -> None:
        # The circuit breaker against SMS pumping tripped: operators must hear of it,
        # once per window per process rather than once per refused request.
        now = time.monotonic()
        if now >= self._budget_alarm_until:
            self._budget_alarm_until = now + (refusal.retry_after or HOUR)
            log.error(
                "global SMS budget of %d per hour is spent: sending stopped for everyone for %s s",
                self._limits.sms_global_per_hour,
                refusal.retry_after,
            )
