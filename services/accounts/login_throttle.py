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
spelling, so nothing tells known and unknown accounts apart. Password login uses this today;
SMS-code login can call the same begin()/succeeded() pair.
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
        ip_limit = self._ip_limit(client_ip)
        pair_limit = self._pair_limit(account, client_ip)
        account_limit = self._account_limit(account)
        await self._limiter.take(ip_limit)
        taken: list[Limit] = [ip_limit]
        try:
            await self._limiter.take(pair_limit)
            taken.append(pair_limit)
            try:
                await self._limiter.take(account_limit)
                taken.append(account_limit)
            except ServiceError:
                # Past the account's threshold: the guess is paid for with a CAPTCHA (one use).
                await self._solve_captcha(image_code_id, image_code)
        except BaseException:
            await asyncio.shield(self._give_back(taken))
            raise
        return LoginAttempt(tuple(taken))

    async def succeeded(self, attempt: LoginAttempt) -> None:
        """The secret was right: the attempt was not a failure, give its counts back."""
        await self._give_back(attempt.taken)

    async def _give_back(self, taken: tuple[Limit, ...] | list[Limit]) -> None:
        ip_limit, *account_limits = taken
        await self._limiter.refund(ip_limit)
        if account_limits:
            await self._limiter.refund(*account_limits)  # one hash slot: {account}

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
