"""Login throttling: what a guess costs, for every way of proving who you are.

Modelled on Auth0's brute-force protection. Three fixed-window counters (services/store/limits.py),
each taken atomically before the secret is checked and given back when it proves right, so
they count unproven attempts and concurrent guesses cannot exceed them:

- per (account, address) pair: one address guessing one account is stopped after a few
  failures, while the owner, from anywhere else, still logs in at once (no lockout);
- per address, across accounts: one address trying many accounts (credential stuffing);
- per account, across addresses: past a threshold, every further attempt for the account
  must carry a solved CAPTCHA, so a botnet pays one CAPTCHA per guess.

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
from dataclasses import dataclass

from services.captcha.service import CaptchaService, check_captcha_params
from services.config import AccountsConfig
from services.errors import Ret, ServiceError
from services.store import keys
from services.store.limits import Limit, RateLimiter

TOO_MANY_FAILURES = "错误次数过多，请{seconds}秒后重试"
CAPTCHA_REQUIRED = "请先输入图片验证码"
CAPTCHA_REQUIRED_REASON = "captcha_required"


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


class LoginThrottle:
    """Decides, before a secret is checked, whether this attempt may be made at all."""

    def __init__(
        self, limiter: RateLimiter, captchas: CaptchaService, config: AccountsConfig
    ) -> None:
        self._limiter = limiter
        self._captchas = captchas
        self._config = config

    async def begin(
        self,
        account: str,
        client_ip: str,
        image_code_id: object = None,
        image_code: object = None,
    ) -> LoginAttempt:
        """Count one attempt for `account` (from account_key) from `client_ip`, or refuse it.

        REQERR (data.reason login_ip / login_account_ip) when the address or the pair is over
        its limit; REQERR captcha_required when the account is past its failure threshold and
        no CAPTCHA came with the attempt; a CAPTCHA refusal when the one given is wrong or gone.
        A refused attempt is not counted.
        """
        limits = (
            self._ip_limit(client_ip),
            self._pair_limit(account, client_ip),
            self._account_limit(account),
        )
        refusals = await self._limiter.take_each(*limits)
        taken = tuple(limit for limit, refused in zip(limits, refusals, strict=True) if not refused)
        try:
            ip_refused, pair_refused, past_threshold = refusals
            refusal = ip_refused or pair_refused
            if refusal is not None:
                raise refusal
            if past_threshold:
                # Past the account's threshold: the guess is paid for with a CAPTCHA (one use).
                await self._solve_captcha(image_code_id, image_code)
        except BaseException:
            await asyncio.shield(self._give_back(taken))
            raise
        return LoginAttempt(taken)

    async def succeeded(self, attempt: LoginAttempt) -> None:
        """The secret was right: the attempt was not a failure, give its counts back."""
        await self._give_back(attempt.taken)

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
