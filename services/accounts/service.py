"""The phone account: register, log in (password or SMS code), reset the password, change
the mobile. SMS-code checks, password hashing, login throttling, sessions ended on change."""

from __future__ import annotations

import asyncio
import dataclasses
import re

from services.accounts.consent import Consent, ConsentPolicy
from services.accounts.credentials import credentials_changed
from services.accounts.login_throttle import LoginThrottle, account_key
from services.accounts.mobiles import canonical_mobile, require_mobile
from services.accounts.passwords import PasswordHasher
from services.accounts.sessions import Session, SessionStore
from services.accounts.sms_signup import sign_up_by_code
from services.accounts.users import User, UserRepository
from services.codes.admission import Overloaded
from services.codes.purposes import Purpose
from services.codes.sms import SmsCodeService
from services.config import AccountsConfig, LimitsConfig
from services.errors import Ret, ServiceError
from services.store import keys
from services.store.limits import Limit, RateLimiter
from services.validation import required_text

SMS_CODE_RE = re.compile(r"[0-9]{6}")
USERNAME_RE = re.compile(r"[a-zA-Z0-9_-]{5,20}")  # meiduo's rule
WRONG_LOGIN = "用户名或密码错误"
WRONG_PASSWORD = "密码错误"


def check_sms_code_format(sms_code: str) -> None:
    if not SMS_CODE_RE.fullmatch(sms_code):
        raise ServiceError(Ret.PARAMERR, "短信验证码应为6位数字", field="sms_code")


class AccountService:
    """Creates users from verified SMS codes and checks logins."""

    def __init__(
        self,
        users: UserRepository,
        hasher: PasswordHasher,
        sms: SmsCodeService,
        limiter: RateLimiter,
        throttle: LoginThrottle,
        sessions: SessionStore,
        config: AccountsConfig,
        limits: LimitsConfig,
        consent: ConsentPolicy,
    ) -> None:
        self._users = users
        self.consent = consent  # public: the handlers' check of a registration's consent
        self.hasher = hasher  # public: its bound is per process (tests hold places in it)
        self._sms = sms
        self._limiter = limiter
        self.throttle = throttle
        self._sessions = sessions
        self._config = config
        self._count_per_ip_minute = limits.count_per_ip_minute

    async def session_user(self, session_id: str | None, seen_from: str | None = None) -> User:
        """The user logged in under session_id, or SESSIONERR (`seen_from`: SessionStore.get).

        A session whose user has since been deleted ends here, so it is not looked up again.
        """
        session = await self._sessions.get(session_id, seen_from=seen_from)
        user = await self._users.by_id(session["user_id"]) if session else None
        if user is None:
            if session is not None:
                await self._sessions.delete(session_id)
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        return user

    async def holder(self, session: Session | None) -> User:
        """The user of a session or access token (SessionStore.get, TokenService.session), or
        SESSIONERR. A user deleted since ends here: every session and token family of it."""
        user = await self._users.by_id(session["user_id"]) if session else None
        if user is None:
            if session is not None:
                await self._sessions.end_all(session["user_id"])
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        return user

    async def register(
        self,
        mobile: object,
        sms_code: object,
        password: object,
        password2: object,
        username: object = None,
        *,
        consent: Consent | None = None,
    ) -> User:
        """Create a user once the SMS code checks out; named `username`, else after the mobile.

        `consent` (ConsentPolicy.require, checked by the caller before this) is recorded with
        the user, in one transaction."""
        mobile, sms_code, password, password2 = required_text(mobile, sms_code, password, password2)
        mobile = require_mobile(mobile)
        self._check_new_password(password, password2)
        name = mobile if username is None else self._checked_username(username, mobile)
        check_sms_code_format(sms_code)

        # A right code has paid: it waits for a hashing place rather than being refused; if
        # none frees in time (Overloaded), the code is given back, so the same request can
        # simply be repeated (docs/SECURITY.md, "Login floods").
        verified = await self._sms.verify_code(mobile, Purpose.REGISTER, sms_code)
        async with self._sms.code_given_back_on_failure(verified):
            async with self.hasher.paid_place() as place:
                password_hash = await self.hasher.hash(place, password)
            return await self._users.create(name, mobile, password_hash, consent=consent)

    async def login_with_code(
        self,
        mobile: object,
        sms_code: object,
        client_ip: str,
        *,
        image_code_id: object = None,
        image_code: object = None,
        agree: object = None,
    ) -> User:
        """SMS login: a right `login` code for a registered mobile, within the login throttle
        of a password login (services/accounts/login_throttle.py, CAPTCHA past the threshold
        included). For a number with no account, with accounts.sms_login_signs_up the account
        is created (consent: `agree`, services/accounts/consent.py), else USERERR.

        A wrong code counts as a failed login and as one of the code's tries.
        """
        mobile, sms_code = required_text(mobile, sms_code)
        mobile = require_mobile(mobile)
        check_sms_code_format(sms_code)

        user = await self._users.by_mobile(mobile)
        attempt = await self.throttle.begin(
            account_key(user.user_id if user else None, mobile),
            client_ip,
            image_code_id,
            image_code,
        )
        verified = await self._sms.verify_code(mobile, Purpose.LOGIN, sms_code)
        if user is None and not self._config.sms_login_signs_up:
            raise ServiceError(Ret.USERERR, "用户不存在", field="mobile")  # deleted since
        async with self._sms.code_given_back_on_failure(verified):
            await self.throttle.succeeded(attempt)  # the code was right: no failed guess
            if user is None:
                user = await sign_up_by_code(
                    self._users, self._sms, verified, self.consent, agree, client_ip
                )
        return user

    async def reset_password(
        self, mobile: object, sms_code: object, password: object, password2: object
    ) -> User:
        """Set a new password with a `reset_password` code, then end every session of the user.

        Of concurrent resets with one code exactly one passes (the code is consumed once).
        The caller starts the new session for the returned user.
        """
        mobile, sms_code, password, password2 = required_text(mobile, sms_code, password, password2)
        mobile = require_mobile(mobile)
        self._check_new_password(password, password2)
        check_sms_code_format(sms_code)

        verified = await self._sms.verify_code(mobile, Purpose.RESET_PASSWORD, sms_code)
        async with self._sms.code_given_back_on_failure(verified):
            user = await self._users.by_mobile(mobile)
            if user is None:
                raise ServiceError(Ret.USERERR, "用户不存在", field="mobile")
            # Should ending the sessions fail, the code is given back: the same request can
            # be repeated in full (setting the same password again is harmless). The code
            # paid: it waits for a hashing place as in register().
            password_hash = await self._set_password(user.user_id, password, paid=True)
        # With the new hash: a host app's session of the new login carries a digest of it.
        return dataclasses.replace(user, password_hash=password_hash)

    async def login(
        self,
        account: object,
        password: object,
        client_ip: str,
        *,
        by_username: bool = False,
        image_code_id: object = None,
        image_code: object = None,
    ) -> User:
        """Check account (a mobile, or with by_username a username too) and password.

        Throttled per account, per address and per pair (services/accounts/login_throttle.py);
        past the account's failure threshold the attempt must carry a solved CAPTCHA.
        """
        account, password = required_text(account, password)
        mobile = canonical_mobile(account)
        use_name = by_username and mobile is None
        if use_name and not USERNAME_RE.fullmatch(account):
            raise ServiceError(Ret.PARAMERR, "用户名格式错误", field="username")
        if not use_name:  # else the account is a username
            account = mobile or require_mobile(account)
        if len(password) > self._config.password_max:
            raise ServiceError(Ret.DATAERR, WRONG_LOGIN)
        # Past the bound on hashes in flight: refused at once, before anything is looked up
        # or counted, so it is no failed guess against the account (docs/SECURITY.md).
        self.hasher.refuse_if_full()
        user = await (self._users.by_name(account) if use_name else self._users.by_mobile(account))
        attempt = await self.throttle.begin(
            account_key(user.user_id if user else None, account),
            client_ip,
            image_code_id,
            image_code,
            password=True,
        )
        try:
            with self.hasher.place() as place:
                # Unknown accounts are checked against a decoy hash: same work, answer, time.
                stored_hash = user.password_hash if user else None
                verdict = await self.hasher.verify(place, stored_hash, password)
                if user is None or not verdict.ok:
                    raise ServiceError(Ret.DATAERR, WRONG_LOGIN)
                await self.throttle.succeeded(attempt)
                if verdict.needs_rehash:
                    # Legacy Werkzeug/Django hash: upgrade it to argon2id, the password known.
                    new_hash = await self.hasher.hash(place, password)
                    await self._users.set_password_hash(user.user_id, new_hash)
        except Overloaded:
            # The bound filled since refuse_if_full(): no guess was made, give its counts back.
            await asyncio.shield(self.throttle.succeeded(attempt))
            raise
        return user

    async def admit(self, user: User) -> None:
        """Before any login starts a session: an account its host app deactivated (Django's
        is_active) is refused as the host's own login refuses it; else the login is noted
        where the host's login notes it (last_login). Nothing to do when standalone."""
        if not await self._users.can_log_in(user):
            raise ServiceError(Ret.USERERR, "用户不存在或未激活")
        await self._users.note_login(user)

    async def change_password(self, user_id: int, password: object) -> None:
        """Set a new password and end every session of the user (change or reset).

        Whoever held a session — perhaps the reason for the change — is logged out everywhere.
        """
        (password,) = required_text(password)
        self._check_password_rule(password)
        await self._set_password(user_id, password)

    async def _set_password(self, user_id: int, password: str, *, paid: bool = False) -> str:
        """Store the new password's hash and end every session; returns the hash. `paid`: an
        SMS code paid for it, so it may wait for a hashing place (PasswordHasher.paid_place)."""
        if paid:
            async with self.hasher.paid_place() as place:
                password_hash = await self.hasher.hash(place, password)
        else:
            with self.hasher.place() as place:
                password_hash = await self.hasher.hash(place, password)
        await self._users.set_password_hash(user_id, password_hash)
        await credentials_changed(self._sessions, user_id)
        return password_hash

    async def count_mobile(self, mobile: object, client_ip: str) -> int:
        """How many users have this mobile (0 or 1), for front-ends that check as you type."""
        canonical = canonical_mobile(mobile)
        if canonical is None:
            raise ServiceError(Ret.PARAMERR, "请输入正确的手机号码", field="mobile")
        await self._limiter.take(self._count_limit(client_ip))
        return await self._users.count(mobile=canonical)

    async def count_username(self, username: object, client_ip: str) -> int:
        """How many users have this name (0 or 1)."""
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise ServiceError(Ret.PARAMERR, "请输入5-20个字符的用户名", field="username")
        await self._limiter.take(self._count_limit(client_ip))
        return await self._users.count(name=username)

    def _count_limit(self, client_ip: str) -> Limit:
        # The count routes tell anyone whether a mobile is registered: a person checks a few
        # values as they type, an enumerator thousands. One budget for both routes.
        return Limit(
            keys.count_ip_minute_key(client_ip),
            self._count_per_ip_minute,
            60,
            "count_ip_minute",
            "查询过于频繁，请{seconds}秒后重试",
        )

    def _check_new_password(self, password: str, password2: str) -> None:
        if password != password2:
            raise ServiceError(Ret.PARAMERR, "两次密码不一致", field="password2")
        self._check_password_rule(password)

    def _check_password_rule(self, password: str) -> None:
        low, high = self._config.password_min, self._config.password_max
        if not low <= len(password) <= high:
            raise ServiceError(Ret.PARAMERR, f"密码长度应为{low}-{high}位", field="password")

    def _checked_username(self, username: object, mobile: str) -> str:
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise ServiceError(Ret.PARAMERR, "请输入5-20个字符的用户名", field="username")
        # ihome and news users are named after their mobile: a username that looks like a
        # mobile number could take another person's name, so it must be the user's own.
        if canonical_mobile(username) not in (None, mobile):
            raise ServiceError(Ret.PARAMERR, "用户名不能是他人的手机号", field="username")
        return username
