"""The SMS-code flow: fraud segments → CAPTCHA and limits (services/codes/reservation.py) →
a place in flight (services/codes/admission.py) → registered? → send, with rollback; and the
one check of a submitted code."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import logging
import secrets
import zoneinfo
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from services.accounts.mobiles import mask_mobile, require_mobile
from services.accounts.users import UserRepository
from services.captcha.service import CaptchaService, check_captcha_params
from services.codes.admission import Overloaded, SendGate
from services.codes.costs import to_units
from services.codes.fraud import FraudGuard, SegmentVerdict
from services.codes.purposes import Purpose
from services.codes.receipts import ReceiptStore
from services.codes.reservation import SmsReservations
from services.codes.send_limits import SendRequest
from services.config import LimitsConfig, SmsConfig, VoiceConfig, clock_time
from services.errors import Ret, ServiceError
from services.providers.base import Channel, CodeMessage, Delivery, Outcome, ProviderError
from services.providers.failover import FailoverSender
from services.providers.ronglian import RonglianClient
from services.store import keys, redis_scripts
from services.store.limits import RateLimiter
from services.store.redisclient import RedisClient

log = logging.getLogger(__name__)

SEND_UNKNOWN_MESSAGE = "短信发送结果未知，如未收到，请稍后重新获取"

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


@dataclass(frozen=True)
class VerifiedCode:
    """A code that checked out and was consumed; give_back_code() puts it back."""

    mobile: str
    purpose: Purpose
    mac: str
    expires_at_ms: int  # when the code would have expired (Unix ms)


@dataclass(frozen=True)
class SentCode:
    """A code on its way: when the mobile may ask again, and the id to follow its delivery."""

    retry_after: int
    send_id: str


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
        fraud: FraudGuard,
        *,
        sms: SmsConfig,
        limits: LimitsConfig,
        voice: VoiceConfig,
        code_hmac_key: str,
        max_code_attempts: int,
        gate: SendGate,
        login_signs_up: bool = False,
    ) -> None:
        self._gate = gate
        self._login_signs_up = login_signs_up  # accounts.sms_login_signs_up
        self._fraud = fraud
        self._users = users
        self._sender = sender
        self._receipts = receipts
        self._notices = notices  # plain notifications (not codes): Ronglian templates
        self._reservations = SmsReservations(redis, captchas, limiter, fraud, sms, limits)
        self._config = sms
        self._global_budget = limits.sms_global_per_hour
        self._hmac_key = code_hmac_key.encode()
        self._max_attempts = max_code_attempts
        self._verify = redis_scripts.register(redis, "sms_verify")
        self._put_back = redis_scripts.register(redis, "sms_put_back")
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

    def overloaded(self) -> Overloaded | None:
        """The refusal a send would get now from admission control, if it would get one.

        Lets the HTTP layer shed a send before it parses anything (handlers/shedding.py);
        send_code admits (or sheds) each send again once its reservation succeeded."""
        return self._gate.refusal() if self._gate.shedding() else None

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

        `user_id` is the logged-in user (change_mobile and confirm_mobile need one; the
        latter goes to that user's own number, `mobile` must be left out). One resend guard and one
        set of counts per mobile serve every purpose. Every refusal is decided before
        anything is sent or stored; a failed send leaves nothing behind. Returns the seconds
        until the mobile may be sent another code and the send's id (for
        GET /api/v1.0/sms_sends/<send_id>).
        `altcha` is a solved proof of work, needed only when a fraud segment of the request
        is elevated.
        """
        if purpose.to_own_number:
            mobile = await self._own_mobile(mobile, user_id)
        if not (mobile and image_code and image_code_id):
            raise ServiceError(Ret.PARAMERR, "参数不完整")
        canonical = require_mobile(mobile)
        if purpose.needs_session and user_id is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        image_code_id, image_code = check_captcha_params(image_code_id, image_code)
        via = self._channel(channel)
        return await self._reserve_and_send(
            canonical, purpose, via, client_ip, altcha, image_code_id, image_code
        )

    async def _reserve_and_send(
        self,
        canonical: str,
        purpose: Purpose,
        via: Channel,
        client_ip: str,
        altcha: object,
        image_code_id: str,
        image_code: str,
    ) -> SentCode:
        code = f"{secrets.randbelow(1_000_000):06d}"
        # Priced before anyone knows which provider takes it: at the dearest that could.
        price = to_units(self._sender.pricing.most_expensive(self._sender.names(via), via))
        # Fraud segments first (before the CAPTCHA is used up, so that a request asked for a
        # proof of work can repeat itself with the same CAPTCHA), then the CAPTCHA, then every
        # limit (services/codes/reservation.py); given back if the send fails.
        verdict, send = await self._reservations.reserve_send(
            SendRequest(
                canonical,
                self._mac(canonical, purpose, code),
                client_ip,
                altcha,
                self._judges_block(purpose),
                image_code_id,
                image_code,
                price,
                # Only where the set is kept (never with a host app: accounts/registered.py).
                read_registered=self._users.registered is not None
                and self._needs_registered_check(purpose),
            )
        )
        async with contextlib.AsyncExitStack() as in_flight:
            try:
                # A place in flight only now, once the CAPTCHA is used and every limit taken:
                # a request that costs its client nothing (a wrong CAPTCHA, a refused limit)
                # never holds one, so it cannot crowd out the sends that pay. Full by now: it
                # waits for the next place freed, at most admission.paid_wait, then
                # Overloaded (503), the reservation given back below like after any refusal.
                # (While the gate is full, handlers/shedding.py sheds a send before anything
                # is used.)
                await in_flight.enter_async_context(self._gate.admit_paid())
                await self._check_mobile_fits_purpose(canonical, purpose, send.registered)
                minutes = max(1, self._config.code_ttl // 60)
                send_id = secrets.token_urlsafe(16)  # 128 random bits: unguessable
                delivery = await self._sender.send(
                    CodeMessage(canonical, code, minutes, via, reference=send_id)
                )
            except ProviderError as failure:
                if failure.outcome is Outcome.UNKNOWN:
                    # It may be on the phone: keep the guard, the code and every count, as
                    # for a sent one, and tell the page to count down rather than invite a
                    # retry.
                    raise ServiceError(
                        Ret.THIRDERR,
                        SEND_UNKNOWN_MESSAGE,
                        data={"reason": "send_unknown"},
                        retry_after=self._config.resend_interval,
                    ) from None
                await asyncio.shield(self._reservations.give_back(send))
                raise
            except BaseException:
                # Nothing was sent: free the mobile at once so the user can retry, uncounted.
                await asyncio.shield(self._reservations.give_back(send, verdict))
                raise
            await self._after_send(canonical, verdict, send_id, delivery, send.guard_token)
        return SentCode(self._config.resend_interval, send_id)

    async def _own_mobile(self, mobile: object, user_id: int | None) -> str:
        """The number a confirm_mobile or delete_account code goes to: the logged-in user's,
        from the database."""
        if user_id is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        if mobile is not None and mobile != "":
            raise ServiceError(
                Ret.PARAMERR, "原手机号的验证码只发往账号的手机号，请勿填写手机号", field="mobile"
            )
        user = await self._users.by_id(user_id)
        if user is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        return user.mobile

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

    # --- fraud segments (services/codes/fraud.py) -------------------------------------------------

    def _judges_block(self, purpose: Purpose) -> bool:
        """Whether a send for `purpose` is judged in its number block's segment too."""
        # A login code that may sign a new number up goes to any number: its block is judged
        # as a registration's is (docs/FRAUD.md), an owner in a pumped block solves a proof.
        signs_up = purpose is Purpose.LOGIN and self._login_signs_up
        return signs_up or not purpose.to_registered_number

    async def _after_send(
        self,
        mobile: str,
        verdict: SegmentVerdict,
        send_id: str,
        delivery: Delivery,
        guard_token: str,
    ) -> None:
        """Record the send for its receipts and its segments for its conversion, and read the
        budget spent (to alert when it runs low): one round trip for all of it."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                self._receipts.record_send(pipe, send_id, delivery, mobile, guard_token)
                self._fraud.remember_send(pipe, mobile, verdict, self._config.code_ttl)
                pipe.get(keys.sms_global_hourly_key())
                results = await pipe.execute()
        except Exception as exc:
            # The SMS is out; a lost record only means no receipt or conversion for this code.
            log.warning("could not record send %s… (receipts, segments): %r", send_id[:6], exc)
            return
        self._fraud.budget_spent(int(results[-1] or 0), self._global_budget)

    async def _code_verified(self, mobile: str) -> None:
        """A right code converts the segments of the send that delivered it."""
        try:
            await self._fraud.converted(mobile)
        except Exception:
            log.warning("could not count a conversion")

    def _needs_registered_check(self, purpose: Purpose) -> bool:
        """Whether a send for purpose asks "registered?" (all but a login that signs up)."""
        return not (purpose is Purpose.LOGIN and self._login_signs_up)

    async def _check_mobile_fits_purpose(
        self, mobile: str, purpose: Purpose, known: bool | None = None
    ) -> None:
        """register and change_mobile need a free mobile; reset and confirm_mobile a registered
        one; login too, unless a login signs up a new number (accounts.sms_login_signs_up).
        `known`: the set of registered numbers' answer, if the reservation read it."""
        if not self._needs_registered_check(purpose):
            return  # any number: one answer whether it has an account or not
        # The set of registered numbers first (services/accounts/registered.py): its "yes" is
        # exact; its "no" is asked of MySQL again where a registered number is needed.
        registered = known if known is not None else await self._users.known_registered(mobile)
        if registered is None or (not registered and purpose.to_registered_number):
            registered = await self._users.mobile_exists(mobile)
        if registered and purpose in (Purpose.REGISTER, Purpose.CHANGE_MOBILE):
            raise ServiceError(Ret.DATAEXIST, "手机号已注册", field="mobile")
        if not registered and purpose.to_registered_number:
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

    @contextlib.asynccontextmanager
    async def code_given_back_on_failure(self, verified: VerifiedCode) -> AsyncIterator[None]:
        """Run the work a verified code pays for. If it fails for a reason that is not the
        user's (database or Redis down, request cancelled), the code is put back so that a
        retry needs no new SMS; a refusal (ServiceError, e.g. DATAEXIST) keeps it used up,
        except Overloaded (the server's, not the user's)."""
        try:
            yield
        except Overloaded:
            await asyncio.shield(self.give_back_code(verified))
            raise
        except ServiceError:
            raise
        except BaseException:
            await asyncio.shield(self.give_back_code(verified))
            raise

    async def give_back_code(self, verified: VerifiedCode) -> None:
        """Undo verify_code after a failure that was not the user's (e.g. the database), so
        a retry needs no new SMS. A newer code sent meanwhile is left alone."""
        if verified.expires_at_ms > 0:
            await self._put_back(
                keys=[keys.sms_code_key(verified.mobile)],
                args=[verified.mac, verified.expires_at_ms],
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
