"""The phone account: register, log in (password or SMS code), reset the password, change
the mobile. SMS-code checks, password hashing, login throttling, sessions ended on change."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

from services.accounts.login_throttle import LoginThrottle, account_key
from services.accounts.mobiles import canonical_mobile, require_mobile
from services.accounts.passwords import PasswordHasher
from services.accounts.sessions import SessionStore
from services.accounts.users import User, UserRepository
from services.codes.admission import Overloaded
from services.codes.purposes import Purpose
from services.codes.sms import SmsCodeService, VerifiedCode
from services.config import AccountsConfig, LimitsConfig
from services.errors import Ret, ServiceError
from services.store import keys
from services.store.limits import Limit, RateLimiter
from services.validation import required_text

SMS_CODE_RE = re.compile(r"[0-9]{6}")
USERNAME_RE = re.compile(r"[a-zA-Z0-9_-]{5,20}")  # meiduo's rule
WRONG_LOGIN = "用户名或密码错误"
WRONG_PASSWORD = "密码错误"
MISSING_FACTOR = "请填写登录密码或原手机号收到的验证码"


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
    ) -> None:
        self._users = users
        self.hasher = hasher  # public: its bound is per process (tests hold places in it)
        self._sms = sms
        self._limiter = limiter
        self.throttle = throttle
        self._sessions = sessions
        self._config = config
        self._count_per_ip_minute = limits.count_per_ip_minute

    async def session_user(self, session_id: str | None) -> User:
        """The user logged in under session_id, or SESSIONERR.

        A session whose user has since been deleted ends here, so it is not looked up again.
        """
        session = await self._sessions.get(session_id)
        user = await self._users.by_id(session["user_id"]) if session else None
        if user is None:
            if session is not None:
                await self._sessions.delete(session_id)
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        return user

    async def register(
        self,
        mobile: object,
        sms_code: object,
        password: object,
        password2: object,
        username: object = None,
    ) -> User:
        """Create a user once the SMS code checks out; named `username`, else after the mobile."""
        mobile, sms_code, password, password2 = required_text(mobile, sms_code, password, password2)
        mobile = require_mobile(mobile)
        self._check_new_password(password, password2)
        name = mobile if username is None else self._checked_username(username, mobile)
        check_sms_code_format(sms_code)

        # Refused (Overloaded) before the code is used, or with the code given back, so the
        # same request can simply be repeated (docs/SECURITY.md, "Login floods").
        self.hasher.refuse_if_full()
        verified = await self._sms.verify_code(mobile, Purpose.REGISTER, sms_code)
        async with self._code_given_back_on_failure(verified):
            with self.hasher.place() as place:
                password_hash = await self.hasher.hash(place, password)
            return await self._users.create(name, mobile, password_hash)

    async def login_with_code(
        self,
        mobile: object,
        sms_code: object,
        client_ip: str,
        *,
        image_code_id: object = None,
        image_code: object = None,
    ) -> User:
        """SMS login: a right `login` code for a registered mobile, within the login throttle
        of a password login (services/accounts/login_throttle.py, CAPTCHA past the threshold
        included).

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
        if user is None:  # no account (deleted since the code was sent)
            raise ServiceError(Ret.USERERR, "用户不存在", field="mobile")
        async with self._code_given_back_on_failure(verified):
            await self.throttle.succeeded(attempt)
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

        self.hasher.refuse_if_full()  # as in register()
        verified = await self._sms.verify_code(mobile, Purpose.RESET_PASSWORD, sms_code)
        async with self._code_given_back_on_failure(verified):
            user = await self._users.by_mobile(mobile)
            if user is None:
                raise ServiceError(Ret.USERERR, "用户不存在", field="mobile")
            # Should ending the sessions fail, the code is given back: the same request can
            # be repeated in full (setting the same password again is harmless).
            await self._set_password(user.user_id, password)
        return user

    async def change_mobile(
        self,
        user_id: int,
        new_mobile: object,
        sms_code: object,
        client_ip: str,
        *,
        password: object = None,
        current_sms_code: object = None,
        image_code_id: object = None,
        image_code: object = None,
    ) -> User:
        """Move the logged-in user to new_mobile, proven by a `change_mobile` code sent to it
        and by the current factor: the password, or a `confirm_mobile` code sent to the
        current number. A session cookie alone moves nothing (docs/SECURITY.md).

        The factor is checked first, within the login throttle (a guess of it is a login
        guess), so a request that fails it leaves the new number's code unused; a right
        current-number code is given back when the change does not happen. The unique index
        decides races for one number (DATAEXIST). Every session of the user ends (the caller
        starts a new one), and the old number gets a notice SMS saying how to undo it.
        """
        new_mobile, sms_code = required_text(new_mobile, sms_code)
        new_mobile = require_mobile(new_mobile)
        check_sms_code_format(sms_code)
        password, current_sms_code = self._factor_input(password, current_sms_code)

        user = await self._users.by_id(user_id)
        if user is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        if current_sms_code is None:
            self.hasher.refuse_if_full()  # before anything is counted, as a login
        attempt = await self.throttle.begin(
            account_key(user.user_id, user.mobile), client_ip, image_code_id, image_code
        )
        try:
            current = await self._prove_current_factor(user, password, current_sms_code)
        except Overloaded:
            await self.throttle.succeeded(attempt)  # no guess was made: nothing counted
            raise
        await self.throttle.succeeded(attempt)
        try:
            verified = await self._sms.verify_code(new_mobile, Purpose.CHANGE_MOBILE, sms_code)
            async with self._code_given_back_on_failure(verified):
                return await self._move(user, new_mobile)
        except BaseException:
            if current is not None:  # the owner proved themselves: no new SMS for a retry
                await asyncio.shield(self._sms.give_back_code(current))
            raise

    @staticmethod
    def _factor_input(password: object, current_sms_code: object) -> tuple[str | None, str | None]:
        """(password, None) or (None, current_sms_code): exactly one proof of the current
        factor, well formed, else PARAMERR (and nothing is used up)."""
        if password is not None and current_sms_code is not None:
            raise ServiceError(Ret.PARAMERR, "登录密码和原手机号验证码只能填写一项")
        if current_sms_code is not None:
            (code,) = required_text(current_sms_code)
            if not SMS_CODE_RE.fullmatch(code):
                raise ServiceError(
                    Ret.PARAMERR, "原手机号验证码应为6位数字", field="current_sms_code"
                )
            return None, code
        if password is None:
            raise ServiceError(Ret.PARAMERR, MISSING_FACTOR, field="password")
        return required_text(password)[0], None

    async def _prove_current_factor(
        self, user: User, password: str | None, current_sms_code: str | None
    ) -> VerifiedCode | None:
        """Check the password (in the executor) or the current number's `confirm_mobile`
        code (consumed; returned so that it can be given back). Wrong: PWDERR or the code's
        refusal, named after the current number."""
        if current_sms_code is None:
            assert password is not None  # _factor_input gave one of the two
            # Too long to be anyone's password: refused without the hashing work (as login).
            if len(password) > self._config.password_max:
                raise ServiceError(Ret.PWDERR, WRONG_PASSWORD, field="password")
            with self.hasher.place() as place:
                verdict = await self.hasher.verify(place, user.password_hash, password)
            if not verdict.ok:
                raise ServiceError(Ret.PWDERR, WRONG_PASSWORD, field="password")
            return None
        try:
            return await self._sms.verify_code(
                user.mobile, Purpose.CONFIRM_MOBILE, current_sms_code
            )
        except ServiceError as refused:
            raise ServiceError(
                refused.ret, f"原手机号的{refused.errmsg}", field="current_sms_code"
            ) from None

    async def _move(self, user: User, new_mobile: str) -> User:
        if user.mobile != new_mobile:
            moved = await self._users.move_to_mobile(user, new_mobile)
            await self._sms.send_mobile_changed_notice(user.mobile, new_mobile)
        else:
            # Codes for change_mobile go only to free numbers, so this is the repeat of a
            # change that was stored but whose sessions could not be ended (Redis failed,
            # the code was given back): finish that part now.
            moved = user
        await self._sessions.end_all(user.user_id)
        return moved

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

    async def change_password(self, user_id: int, password: object) -> None:
        """Set a new password and end every session of the user (change or reset).

        Whoever held a session — perhaps the reason for the change — is logged out everywhere.
        """
        (password,) = required_text(password)
        self._check_password_rule(password)
        await self._set_password(user_id, password)

    async def _set_password(self, user_id: int, password: str) -> None:
        with self.hasher.place() as place:
            password_hash = await self.hasher.hash(place, password)
        await self._users.set_password_hash(user_id, password_hash)
        await self._sessions.end_all(user_id)

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

    @contextlib.asynccontextmanager
    async def _code_given_back_on_failure(self, verified: VerifiedCode) -> AsyncIterator[None]:
        """Run the work a verified code pays for. If it fails for a reason that is not the
        user's (database or Redis down, request cancelled), the code is put back so that a
        retry needs no new SMS; a refusal (ServiceError, e.g. DATAEXIST) keeps it used up,
        except Overloaded (the server's, not the user's)."""
        try:
            yield
        except Overloaded:
            await asyncio.shield(self._sms.give_back_code(verified))
            raise
        except ServiceError:
            raise
        except BaseException:
            await asyncio.shield(self._sms.give_back_code(verified))
            raise

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
