"""Reserving one SMS send: the CAPTCHA, then every limit of the send, before anything is sent.

One path for standalone Redis and Redis Cluster; each step is atomic on its own hash slot:

1. The CAPTCHA is used up and compared (CaptchaService.consume: GETDEL, then a constant-time
   comparison), alone and first: of concurrent requests with one CAPTCHA only one goes on, and
   a request without a solved CAPTCHA touches no limit.
2. Two scripts in two slots, sent in one round trip (redis_scripts.run_together): the per-IP
   count and the global budget, both or neither (one slot: the per-IP key is tagged with the
   budget key's name), and the mobile's reservation ({mobile}: resend guard, hourly and daily
   caps, the new code; services/store/lua/sms_reserve.lua). If either refuses, what the other took
   is given back (one more round trip) and the answer is the first refusal in the order IP,
   guard, hourly, daily, budget. A cap is never overshot; at worst a concurrent request is
   refused for a place that is given back a moment later. The
   resend guard is a SET of a fresh token: of concurrent requests for one mobile exactly one
   holds it, so exactly one SMS goes out per guard.

A reservation that did not lead to a send (a refusal above, "already registered", a failed
send) is released: guard lifted (if still its own), the code it replaced put back, every count
given back, so a refusal changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import cast

from services.accounts.mobiles import mask_mobile
from services.captcha.service import CaptchaService
from services.codes.costs import to_units
from services.config import LimitsConfig, SmsConfig
from services.errors import ServiceError
from services.store import keys, redis_scripts
from services.store.limits import Limit, RateLimiter
from services.store.redis_scripts import ScriptArg, ScriptCall
from services.store.redisclient import RedisClient

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
BUDGET_MESSAGE = "短信服务繁忙，请{seconds}秒后重试"
BUDGET_REASONS = ("global_hourly", "global_yuan_hourly", "budget_shed")
GLOBAL_REASONS = ("global_hourly", "global_yuan_hourly")


@dataclass
class Reservation:
    """What one send takes, so that it can be given back if the SMS does not go out."""

    mobile: str
    guard_token: str
    mac: str  # the new code's HMAC
    ip_limit: Limit
    budget: Limit
    # The yuan budget (limits.sms_global_yuan_per_hour), if set: this send's price in UNITS.
    spend: Limit | None = None
    # The code this send's code replaced (mac, tries, expiry ms), to put back on release.
    replaced_code: list[ScriptArg] = field(default_factory=list)

    @property
    def counts(self) -> tuple[Limit, ...]:
        """The counters taken in one script (one slot): the address, the budget(s)."""
        if self.spend is None:
            return (self.ip_limit, self.budget)
        return (self.ip_limit, self.budget, self.spend)


class SmsReservations:
    """Takes and gives back the CAPTCHA and the limits of SMS sends."""

    def __init__(
        self,
        redis: RedisClient,
        captchas: CaptchaService,
        limiter: RateLimiter,
        sms: SmsConfig,
        limits: LimitsConfig,
    ) -> None:
        self._redis = redis
        self._captchas = captchas
        self._limiter = limiter
        self._sms = sms
        self._limits = limits
        self._reserve_mobile = redis_scripts.register(redis, "sms_reserve")
        self._release_mobile = redis_scripts.register(redis, "sms_release")
        self._budget_alarm_until = 0.0

    def ip_limit(self, client_ip: str) -> Limit:
        return Limit(
            keys.sms_ip_hourly_key(client_ip),
            self._limits.sms_per_ip_hour,
            HOUR,
            "ip_hourly",
            "当前网络发送短信次数过多，请{seconds}秒后重试",
        )

    def budget(self, share: float = 1.0) -> Limit:
        """The global hourly budget, or the `share` of it that a fraud tier may use."""
        budget = self._limits.sms_global_per_hour
        if share < 1:
            # Budget shedding: newcomers and poor segments may use only part of the budget,
            # so near the end of it only clients with a good record are still served.
            limit = max(1, int(budget * share))
            return Limit(keys.sms_global_hourly_key(), limit, HOUR, "budget_shed", BUDGET_MESSAGE)
        return Limit(keys.sms_global_hourly_key(), budget, HOUR, "global_hourly", BUDGET_MESSAGE)

    def spend(self, price_units: int, share: float = 1.0) -> Limit | None:
        """The yuan budget for a send of this price (UNITS), or the `share` of it a fraud tier
        may use; None when limits.sms_global_yuan_per_hour is 0 (no yuan budget)."""
        yuan = self._limits.sms_global_yuan_per_hour
        if yuan <= 0:
            return None
        units = max(1, to_units(yuan * min(share, 1.0)))
        reason = "budget_shed" if share < 1 else "global_yuan_hourly"
        key = keys.sms_global_spend_key()
        return Limit(key, units, HOUR, reason, BUDGET_MESSAGE, cost=max(0, price_units))

    def mobile_limits(self, mobile: str) -> tuple[Limit, Limit, Limit]:
        """The resend guard, the hourly and the daily cap of one mobile."""
        return (
            Limit(
                keys.sms_guard_key(mobile),
                1,
                self._sms.resend_interval,
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

    async def reserve(self, send: Reservation, captcha_id: str, answer: str) -> None:
        """Use up the CAPTCHA, then take every limit of the send, or raise the refusal (and
        take nothing)."""
        await self._captchas.consume(captcha_id, answer)
        counts = self._limiter.take_call(*send.counts)
        try:
            replies = await redis_scripts.run_together(
                self._redis, [counts, self._reserve_call(send)]
            )
        except BaseException:
            # Which steps ran is unknown: the mobile's release is safe to repeat (it acts
            # only while the guard holds this send's token); counts expire by themselves.
            await asyncio.shield(self._give_back(send, [self._release_call(send)]))
            raise
        counts_reply, mobile_reply = replies
        if isinstance(counts_reply, BaseException):
            counts_failure: BaseException | None = counts_reply
        else:
            counts_failure = self._limiter.refusal(counts_reply, *send.counts)
        if isinstance(mobile_reply, BaseException):
            mobile_failure: BaseException | None = mobile_reply
        else:
            mobile_failure = self._mobile_refusal(send, mobile_reply)
        failures = [failure for failure in (counts_failure, mobile_failure) if failure is not None]
        if not failures:
            return
        taken = []
        if counts_failure is None:
            taken.append(self._limiter.refund_call(*send.counts))
        if mobile_failure is None:
            taken.append(self._release_call(send))
        if taken:
            await asyncio.shield(self._give_back(send, taken))
        # The answer is the first refusal in the order IP, guard, hourly, daily, budget: the
        # counts script checks the address before the budget, so only a budget refusal goes
        # after the mobile's (a stable sort).
        failures.sort(key=lambda failure: _reason(failure) in BUDGET_REASONS)
        if _reason(failures[0]) in GLOBAL_REASONS:
            self._budget_alarm(cast("ServiceError", failures[0]))
        raise failures[0]

    async def give_back(self, send: Reservation) -> None:
        """Give back everything a reservation took (its SMS was not sent)."""
        await self._give_back(
            send,
            [self._limiter.refund_call(*send.counts), self._release_call(send)],
        )

    def _reserve_call(self, send: Reservation) -> ScriptCall:
        guard, hourly, daily = self.mobile_limits(send.mobile)
        return ScriptCall(
            self._reserve_mobile,
            [guard.key, keys.sms_code_key(send.mobile), hourly.key, daily.key],
            [
                send.guard_token,
                guard.window,
                send.mac,
                self._sms.code_ttl,
                hourly.limit,
                hourly.window,
                daily.limit,
                daily.window,
            ],
        )

    def _mobile_refusal(self, send: Reservation, reply: object) -> ServiceError | None:
        refused, ms_left, *replaced = cast("list[ScriptArg]", reply)
        if refused:
            return self.mobile_limits(send.mobile)[int(refused) - 1].refusal(int(ms_left))
        send.replaced_code = replaced
        return None

    def _release_call(self, send: Reservation) -> ScriptCall:
        guard, hourly, daily = self.mobile_limits(send.mobile)
        return ScriptCall(
            self._release_mobile,
            [guard.key, keys.sms_code_key(send.mobile), hourly.key, daily.key],
            [send.guard_token, send.mac, *send.replaced_code],
        )

    async def _give_back(self, send: Reservation, calls: list[ScriptCall]) -> None:
        if not await redis_scripts.give_back_together(self._redis, calls):
            # Redis failed mid-request: guards and counters expire by themselves.
            log.warning("could not undo an SMS reservation of %s", mask_mobile(send.mobile))

    def _budget_alarm(self, refusal: ServiceError) -> None:
        # The circuit breaker against SMS pumping tripped: operators must hear of it,
        # once per window per process rather than once per refused request.
        now = time.monotonic()
        if now >= self._budget_alarm_until:
            self._budget_alarm_until = now + (refusal.retry_after or HOUR)
            limits = self._limits
            log.error(
                "global SMS budget of %d per hour (%s yuan) is spent (%s): sending stopped for "
                "everyone for %s s",
                limits.sms_global_per_hour,
                limits.sms_global_yuan_per_hour or "no limit in",
                _reason(refusal),
                refusal.retry_after,
            )


def _reason(failure: BaseException | None) -> object:
    """The reason a refusal names (a limit's), or None."""
    return failure.data.get("reason") if isinstance(failure, ServiceError) else None
