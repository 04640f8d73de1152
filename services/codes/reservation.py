"""Reserving one SMS send: its fraud segments, its CAPTCHA, then every limit of the send, before
anything is sent: one logical path, written once as Lua pieces (services/store/lua/pieces/),
composed per deployment.

The steps, in this order, with the same answers on every deployment:

1. The fraud segments judge the send (services/codes/fraud.py; after a proof of work that came
   with the request is redeemed). First, so that a request asked for a proof of work can repeat
   itself with the same CAPTCHA: a refusal here leaves the CAPTCHA unused.
2. The CAPTCHA is used up and compared, whatever the answer: of concurrent requests with one
   CAPTCHA only one goes on, and a request without a solved CAPTCHA touches no limit.
3. The per-IP count and the global budget (and the yuan spend) of the send's fraud tier, both
   or neither (one slot: the per-IP key is tagged with the budget key's name), and the
   mobile's reservation ({mobile}: resend guard, hourly and daily caps, the new code). The
   answer is the first refusal in the order IP, guard, hourly, daily, budget. The resend guard
   is a SET of a fresh token: of concurrent requests for one mobile exactly one holds it, so
   exactly one SMS goes out per guard.

On standalone Redis (redis.mode standalone, every key on one node) the three steps are one
script, services/store/lua/sms_send_reserve.lua: one round trip per send, and since it is
atomic it checks every limit before it takes any, so a refusal takes nothing. The tier is only
known inside it, so it gets the counters of every tier (FraudGuard.budget_share) and picks one.

On Redis Cluster each step is atomic on its own hash slot: the fraud script
(fraud_judge.lua, {fraud}), the CAPTCHA's GETDEL (compared in constant time here), then the
counts (limits_take.lua) and the mobile (sms_reserve.lua) in one round trip
(redis_scripts.run_together). If either refuses, what the other took is given back (one more
round trip), and the fraud place too (another): a cap is never overshot; at worst a
concurrent request is refused for a place that is given back a moment later.

A reservation that did not lead to a send ("already registered", a failed send) is released:
guard lifted (if still its own), the code it replaced put back, every count and the fraud
place given back: one round trip on either deployment (sms_send_give_back.lua on standalone,
the three give-back scripts in one pipeline on Cluster).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import cast

from redis.asyncio.cluster import RedisCluster

from services.accounts.mobiles import mask_mobile
from services.captcha.service import CaptchaService, captcha_refusal
from services.codes.fraud import FraudGuard, SegmentVerdict, Tier, keys_of
from services.codes.send_limits import HOUR, Reservation, SendLimits, SendRequest
from services.config import LimitsConfig, SmsConfig
from services.errors import ServiceError
from services.store import keys, redis_scripts
from services.store.limits import RateLimiter
from services.store.redis_scripts import ScriptArg, ScriptCall
from services.store.redisclient import RedisClient

log = logging.getLogger(__name__)

BUDGET_REASONS = ("global_hourly", "global_yuan_hourly", "budget_shed")
GLOBAL_REASONS = ("global_hourly", "global_yuan_hourly")


class SmsReservations:
    """Takes and gives back the fraud place, the CAPTCHA and the limits of SMS sends."""

    def __init__(
        self,
        redis: RedisClient,
        captchas: CaptchaService,
        limiter: RateLimiter,
        fraud: FraudGuard,
        sms: SmsConfig,
        limits: LimitsConfig,
        *,
        one_script: bool | None = None,
    ) -> None:
        self._redis = redis
        self._captchas = captchas
        self._limiter = limiter
        self._fraud = fraud
        self._sms = sms
        self._limits = limits
        self.limits = SendLimits(sms, limits)
        # One script per send where every key lives on one node (redis.mode standalone: the
        # client server.py builds from it), separate steps on Redis Cluster; tests choose.
        self._one_script = not isinstance(redis, RedisCluster) if one_script is None else one_script
        self._reserve_mobile = redis_scripts.register(redis, "sms_reserve")
        self._release_mobile = redis_scripts.register(redis, "sms_release")
        self._reserve_send = redis_scripts.register(redis, "sms_send_reserve")
        self._give_back_send = redis_scripts.register(redis, "sms_send_give_back")
        self._budget_alarm_until = 0.0

    @property
    def one_script(self) -> bool:
        """True if a send is reserved in one script (standalone), False if in steps."""
        return self._one_script

    async def reserve_send(self, request: SendRequest) -> tuple[SegmentVerdict, Reservation]:
        """Judge the send in its fraud segments, use up the CAPTCHA, take every limit of the
        send: the segments' verdict and what the send took, or raise the first refusal (and
        take nothing)."""
        if self._one_script:
            return await self._reserve_in_one_script(request)
        verdict = await self._fraud.judge(
            request.mobile, request.client_ip, request.altcha, judge_block=request.judge_block
        )
        send = self._reservation(request, secrets.token_hex(8), verdict.tier)
        try:
            await self.reserve(send, request.captcha_id, request.answer)
        except BaseException:
            await asyncio.shield(self._fraud.give_back(verdict))
            raise
        return verdict, send

    def _reservation(self, request: SendRequest, guard_token: str, tier: Tier) -> Reservation:
        share = self._fraud.budget_share(tier)
        return Reservation(
            request.mobile,
            guard_token,
            request.mac,
            self.limits.ip_limit(request.client_ip),
            self.limits.budget(share),
            self.limits.spend(request.price_units, share),
        )

    async def _reserve_in_one_script(
        self, request: SendRequest
    ) -> tuple[SegmentVerdict, Reservation]:
        """reserve_send() as one script (services/store/lua/sms_send_reserve.lua)."""
        segments = self._fraud.send_segments(
            request.mobile, request.client_ip, judge_block=request.judge_block
        )
        fraud_args: list[ScriptArg] = []
        if segments:
            pow_level = await self._fraud.proof_level(request.altcha)
            fraud_args = list(self._fraud.judge_call(segments, pow_level).args)
        guard_token = secrets.token_hex(8)
        # The tier is known only inside the script: it gets the counters of each tier.
        by_tier = [self._reservation(request, guard_token, tier) for tier in Tier]
        counter_args: list[ScriptArg] = []
        for tier_send in by_tier:
            counter_args += self._limiter.take_call(*tier_send.counts).args
        mobile = self._reserve_call(by_tier[0])
        counters = by_tier[0].counts
        call = ScriptCall(
            self._reserve_send,
            [
                keys.captcha_key(request.captcha_id),
                *mobile.keys,
                keys.registered_ready_key(),
                keys.registered_set_key(),
                *(limit.key for limit in counters),
                *keys_of(segments),
            ],
            [
                len(counters),
                request.answer.upper(),
                request.mobile if request.read_registered else "",
                *mobile.args,
                *counter_args,
                *fraud_args,
            ],
        )
        try:
            reply = cast("list[object]", await call.run())
        except BaseException:
            # Whether it ran is unknown: the mobile's release is safe to repeat (it acts only
            # while the guard holds this send's token); counts and segments expire by themselves.
            await asyncio.shield(self._give_back(by_tier[0], [self._release_call(by_tier[0])]))
            raise
        verdict_reply, captcha, counts_reply, mobile_reply, registered = reply
        # Raises the segments' refusal (proof of work, blocked), logging a state change.
        verdict = self._fraud.verdict(segments, verdict_reply) if segments else None
        if cast("int", captcha) > 0:
            raise captcha_refusal(expired=captcha == 1)
        send = by_tier[verdict.tier if verdict is not None else Tier.GOOD]
        counts_failure = self._limiter.refusal(counts_reply, *send.counts)
        mobile_failure = self._mobile_refusal(send, mobile_reply)
        if counts_failure is not None or mobile_failure is not None:
            self._raise_first([counts_failure, mobile_failure])
        if registered != -1:
            send.registered = bool(registered)
        return verdict or SegmentVerdict.unjudged(), send

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
        failures = [counts_failure, mobile_failure]
        if counts_failure is None and mobile_failure is None:
            return
        taken = []
        if counts_failure is None:
            taken.append(self._limiter.refund_call(*send.counts))
        if mobile_failure is None:
            taken.append(self._release_call(send))
        if taken:
            await asyncio.shield(self._give_back(send, taken))
        self._raise_first(failures)

    def _raise_first(self, failures: list[BaseException | None]) -> None:
        """Raise the first refusal in the order IP, guard, hourly, daily, budget of those of
        the counts and the mobile (in that order; None: taken)."""
        refusals = [failure for failure in failures if failure is not None]
        # The counts script checks the address before the budget, so only a budget refusal
        # goes after the mobile's (a stable sort).
        refusals.sort(key=lambda failure: _reason(failure) in BUDGET_REASONS)
        if _reason(refusals[0]) in GLOBAL_REASONS:
            self._budget_alarm(cast("ServiceError", refusals[0]))
        raise refusals[0]

    async def give_back(self, send: Reservation, verdict: SegmentVerdict | None = None) -> None:
        """Give back everything a reservation took (its SMS was not sent) and, with its
        verdict, its place in the fraud segments: one round trip."""
        fraud = self._fraud.give_back_call(verdict) if verdict is not None else None
        if self._one_script:
            await self._give_back(send, [self._give_back_call(send, fraud)])
            return
        calls = [self._limiter.refund_call(*send.counts), self._release_call(send)]
        await self._give_back(send, calls if fraud is None else [*calls, fraud])

    def _give_back_call(self, send: Reservation, fraud: ScriptCall | None) -> ScriptCall:
        """give_back() as one script (services/store/lua/sms_send_give_back.lua)."""
        release = self._release_call(send)
        return ScriptCall(
            self._give_back_send,
            [
                *release.keys,
                *(limit.key for limit in send.counts),
                *(fraud.keys if fraud is not None else ()),
            ],
            [
                len(send.counts),
                *(limit.cost for limit in send.counts),
                *(fraud.args if fraud is not None else ("", 0)),
                *release.args,
            ],
        )

    def _reserve_call(self, send: Reservation) -> ScriptCall:
        guard, hourly, daily = self.limits.mobile_limits(send.mobile)
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
            return self.limits.mobile_limits(send.mobile)[int(refused) - 1].refusal(int(ms_left))
        send.replaced_code = replaced
        return None

    def _release_call(self, send: Reservation) -> ScriptCall:
        guard, hourly, daily = self.limits.mobile_limits(send.mobile)
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
