"""Login throttling: what a guess costs, for every way of proving who you are.

Modelled on Auth0's brute-force protection. Three fixed-window counters (services/store/limits.py),
each taken atomically before the secret is checked and given back when it proves right, so
they count unproven attempts and concurrent guesses cannot exceed them:

- per (account, address) pair: one address guessing one account is stopped after a few
  failures, while the owner, from anywhere else, still logs in at once (no lockout);
- per address, across accounts: one address trying many accounts (credential stuffing);
- per account, across addresses: past a threshold, every further attempt for the account
  must carry a solved CAPTCHA, so a botnet pays one CAPTCHA per guess;
- everywhere (password logins only, `LoginFailureRate`): a rolling count of unproven password
  logins on all accounts from all addresses; while it is past its threshold every password
  login must carry a solved CAPTCHA, the same ask as the account's. A credential-stuffing
  botnet (each guess another account, another address) passes every other counter, and each
  guess costs the server an argon2id verification (docs/SECURITY.md, "Login floods").

The account is the resolved user (`account_key`): every spelling of it — any case of the
name, or the mobile — shares its counters; an unknown account is counted under its canonical
spelling, so nothing tells known and unknown accounts apart. Password login, SMS-code login
and the password check of a change of mobile all call the same begin()/succeeded() pair.

The three counters are taken in one round trip (each on its own, in its own slot), and what
was taken is given back if the address or the pair refuses; the answer is the first refusal
in the order address, pair, then the account's CAPTCHA, whatever the timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.captcha.service import CaptchaService, check_captcha_params
from services.config import AccountsConfig
from services.errors import Ret, ServiceError
from services.store import keys, redis_scripts
from services.store.limits import Limit, RateLimiter
from services.store.redisclient import RedisClient

TOO_MANY_FAILURES = "错误次数过多，请{seconds}秒后重试"
CAPTCHA_REQUIRED = "请先输入图片验证码"
CAPTCHA_REQUIRED_REASON = "captcha_required"
RATE_BUCKETS = 10  # the global window is counted in this many buckets (its resolution)


def account_key(user_id: int | None, spelling: str) -> str:
    """The account an attempt is about: the user if it exists, else the canonical spelling.

    Usernames are ASCII and looked up case-insensitively, mobiles are digits: lower case is
    the canonical form of both.
    """
    return f"user:{user_id}" if user_id is not None else f"unknown:{spelling.lower()}"


@dataclass(frozen=True)
class LoginAttempt:
    """The counters one attempt took; succeeded() gives them back."""

    taken: tuple[Limit, ...]
    rate_bucket: int | None = None  # where LoginFailureRate counted it, if it did


class LoginFailureRate:
    """Unproven password logins everywhere in the last `window` seconds (in RATE_BUCKETS
    buckets, services/store/lua/login_rate_count.lua): a spike when `threshold` came before.

    `threshold` 0 turns it off. `clock` (Unix seconds) names the bucket; tests set it.
    """

    def __init__(self, redis: RedisClient, threshold: int, window: int) -> None:
        self._count = redis_scripts.register(redis, "login_rate_count")
        self._refund = redis_scripts.register(redis, "login_rate_refund")
        self._threshold = threshold
        self._window = window
        self.clock: Callable[[], float] = time.time

    @property
    def enabled(self) -> bool:
        return self._threshold > 0

    async def count(self) -> tuple[int, bool]:
        """Count one attempt: (its bucket, whether the rate was past the threshold before it)."""
        bucket = int(self.clock() * RATE_BUCKETS // self._window)
        key = keys.login_global_failures_key()
        before = await self._count(keys=[key], args=[bucket, RATE_BUCKETS, self._window])
        return bucket, int(before) >= self._threshold

    async def give_back(self, bucket: int) -> None:
        """The attempt proved right: it was no failure."""
        await self._refund(keys=[keys.login_global_failures_key()], args=[bucket])


class LoginThrottle:
    """Decides, before a secret is checked, whether this attempt may be made at all."""

    def __init__(
        self,
        limiter: RateLimiter,
        captchas: CaptchaService,
        config: AccountsConfig,
        rate: LoginFailureRate,
    ) -> None:
        self._limiter = limiter
        self._captchas = captchas
        self._config = config
        self.rate = rate  # public: tests move its clock

    async def begin(
        self,
        account: str,
        client_ip: str,
        image_code_id: object = None,
        image_code: object = None,
        *,
        password: bool = False,
    ) -> LoginAttempt:
        """Count one attempt for `account` (from account_key) from `client_ip`, or refuse it.

        REQERR (data.reason login_ip / login_account_ip) when the address or the pair is over
        its limit; REQERR captcha_required when the account is past its failure threshold (or,
        for a `password` login, all logins are: LoginFailureRate) and no CAPTCHA came with the
        attempt; a CAPTCHA refusal when the one given is wrong or gone. A refused attempt is
        not counted, except in the global rate once it passed the address's limits: a flood
        refused for want of CAPTCHAs keeps the challenge on while it lasts.
        """
        limits = (
            self._ip_limit(client_ip),
            self._pair_limit(account, client_ip),
            self._account_limit(account),
        )
        refusals = await self._limiter.take_each(*limits)
        taken = tuple(limit for limit, refused in zip(limits, refusals, strict=True) if not refused)
        bucket = None
        try:
            ip_refused, pair_refused, past_threshold = refusals
            refusal = ip_refused or pair_refused
            if refusal is not None:
                raise refusal
            needs_captcha = past_threshold is not None  # past the account's threshold
            if password and self.rate.enabled:
                # Only attempts within their address's limits: one address alone cannot
                # switch the challenge on for everyone.
                bucket, spike = await self.rate.count()
                needs_captcha = needs_captcha or spike
            if needs_captcha:
                # The guess is paid for with a CAPTCHA (one use).
                await self._solve_captcha(image_code_id, image_code)
        except BaseException:
            await asyncio.shield(self._give_back(taken))
            raise
        return LoginAttempt(taken, bucket)

    async def succeeded(self, attempt: LoginAttempt) -> None:
        """The secret was right: the attempt was not a failure, give its counts back."""
        await self._give_back(attempt.taken)
        if attempt.rate_bucket is not None:
            await self.rate.give_back(attempt.rate_bucket)

    async def _give_back(self, taken: tuple[Limit, ...]) -> None:
        await self._limiter.refund_each(*taken)

    async def _solve_captcha(self, image_code_id: object, image_code: object) -> None:
        if not image_code_id or not image_code:
            raise ServiceError(
                Ret.REQERR,
                CAPTCHA_REQUIRED,
                data={"reason": CAPTCHA_REQUIRED_REASON},
                field="image_code",
            )
        captcha_id, answer = check_captcha_params(image_code_id, image_code)
        await self._captchas.consume(captcha_id, answer)

    def _ip_limit(self, client_ip: str) -> Limit:
        return Limit(
            keys.login_ip_failures_key(client_ip),
            self._config.login_ip_max_failures,
            self._config.login_failure_window,
            "login_ip",
            TOO_MANY_FAILURES,
        )

    def _pair_limit(self, account: str, client_ip: str) -> Limit:
        return Limit(
            keys.login_pair_failures_key(account, client_ip),
            self._config.login_max_failures,
            self._config.login_failure_window,
            "login_account_ip",
            TOO_MANY_FAILURES,
        )

    def _account_limit(self, account: str) -> Limit:
        return Limit(
            keys.login_account_failures_key(account),
            self._config.login_captcha_after,
            self._config.login_captcha_window,
            CAPTCHA_REQUIRED_REASON,
            CAPTCHA_REQUIRED,
        )
