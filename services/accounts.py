"""Registration and login: SMS-code check, password hashing, login throttling."""

from __future__ import annotations

import asyncio
import math
import re

from services import keys
from services.config import AccountsConfig
from services.errors import Ret, ServiceError
from services.limits import Limit, RateLimiter
from services.passwords import PasswordHasher
from services.sms import SmsCodeService
from services.users import User, UserRepository
from services.validation import is_mobile

SMS_CODE_RE = re.compile(r"[0-9]{6}")
USERNAME_RE = re.compile(r"[a-zA-Z0-9_-]{5,20}")  # meiduo's rule
WRONG_LOGIN = "用户名或密码错误"

# Take one login attempt from a fixed-window budget, atomically, before the password is
# checked: concurrent guesses cannot exceed the budget. Returns -1 (go on) or the ms left.
TAKE_ATTEMPT_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
    local ms_left = redis.call('PTTL', KEYS[1])
    if ms_left < 0 then ms_left = tonumber(ARGV[2]) * 1000 end
    return ms_left
end
redis.call('INCR', KEYS[1])
if used == 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return -1
"""

# Give an attempt back (it was refused elsewhere or proved right); never creates the key.
RETURN_ATTEMPT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class AccountService:
    """Creates users from verified SMS codes and checks logins."""

    def __init__(
        self,
        redis,
        users: UserRepository,
        hasher: PasswordHasher,
        sms: SmsCodeService,
        limiter: RateLimiter,
        config: AccountsConfig,
        count_per_ip_minute: int,
    ) -> None:
        self._redis = redis
        self._limiter = limiter
        self._count_per_ip_minute = count_per_ip_minute
        self._users = users
        self._hasher = hasher
        self._sms = sms
        self._config = config
        self._take_attempt = redis.register_script(TAKE_ATTEMPT_SCRIPT)
        self._return_attempt = redis.register_script(RETURN_ATTEMPT_SCRIPT)

    async def register(
        self,
        mobile: object,
        sms_code: object,
        password: object,
        password2: object,
        username: object = None,
    ) -> User:
        """Create a user once the SMS code checks out; named `username`, else after the mobile."""
        fields = (mobile, sms_code, password, password2)
        if not all(isinstance(value, str) and value for value in fields):
            raise ServiceError(Ret.PARAMERR, "参数不完整")
        if not is_mobile(mobile):
            raise ServiceError(Ret.PARAMERR, "手机号格式错误", field="mobile")
        if password != password2:
            raise ServiceError(Ret.PARAMERR, "两次密码不一致", field="password2")
        self._check_password_rule(password)
        if username is not None:
            self._check_username(username, mobile)
        if not SMS_CODE_RE.fullmatch(sms_code):
            raise ServiceError(Ret.PARAMERR, "短信验证码应为6位数字", field="sms_code")

        ms_left = await self._sms.check_code(mobile, sms_code)
        try:
            password_hash = await self._hasher.hash(password)
            return await self._users.create(username or mobile, mobile, password_hash)
        except ServiceError:
            raise  # DATAEXIST: the mobile is taken, the code has no further use
        except BaseException:
            # The database failed, not the user: give the code back so a retry needs no new SMS.
            await asyncio.shield(self._sms.restore_code(mobile, sms_code, ms_left))
            raise

    async def login(
        self, account: object, password: object, client_ip: str, *, by_username: bool = False
    ) -> User:
        """Check account (a mobile, or with by_username a username too) and password.

        At most login_max_failures unproven attempts per account and per client IP per window.
        """
        if not (isinstance(account, str) and account and isinstance(password, str) and password):
            raise ServiceError(Ret.PARAMERR, "参数不完整")
        use_name = by_username and not is_mobile(account)
        if use_name and not USERNAME_RE.fullmatch(account):
            raise ServiceError(Ret.PARAMERR, "用户名格式错误", field="username")
        if not use_name and not is_mobile(account):
            raise ServiceError(Ret.PARAMERR, "手机号格式错误", field="mobile")
        if len(password) > self._config.password_max:
            raise ServiceError(Ret.DATAERR, WRONG_LOGIN)

        mobile_key = keys.login_failures_mobile_key(account)
        ip_key = keys.login_failures_ip_key(client_ip)
        await self._take_login_attempt(mobile_key)
        try:
            await self._take_login_attempt(ip_key)
        except ServiceError:
            await self._return_attempt(keys=[mobile_key])  # this attempt never happened
            raise

        user = await (self._users.by_name(account) if use_name else self._users.by_mobile(account))
        # Unknown mobiles are checked against a decoy hash: same work, same answer, same time.
        verdict = await self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not verdict.ok:
            raise ServiceError(Ret.DATAERR, WRONG_LOGIN)
        await self._redis.delete(mobile_key)
        await self._return_attempt(keys=[ip_key])
        if verdict.needs_rehash:
            # Legacy Werkzeug/Django hash: upgrade it to argon2id now that we know the password.
            await self._users.set_password_hash(user.user_id, await self._hasher.hash(password))
        return user

    async def count_mobile(self, mobile: object, client_ip: str) -> int:
        """How many users have this mobile (0 or 1), for front-ends that check as you type."""
        if not is_mobile(mobile):
            raise ServiceError(Ret.PARAMERR, "请输入正确的手机号码", field="mobile")
        await self._limiter.take(self._count_limit(client_ip))
        return await self._users.count(mobile=mobile)

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

    def _check_password_rule(self, password: str) -> None:
        low, high = self._config.password_min, self._config.password_max
        if not low <= len(password) <= high:
            raise ServiceError(Ret.PARAMERR, f"密码长度应为{low}-{high}位", field="password")

    def _check_username(self, username: object, mobile: str) -> None:
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise ServiceError(Ret.PARAMERR, "请输入5-20个字符的用户名", field="username")
        # ihome and news users are named after their mobile: a username that looks like a
        # mobile number could take another person's name, so it must be the user's own.
        if is_mobile(username) and username != mobile:
            raise ServiceError(Ret.PARAMERR, "用户名不能是他人的手机号", field="username")

    async def _take_login_attempt(self, key: str) -> None:
        ms_left = await self._take_attempt(
            keys=[key],
            args=[self._config.login_max_failures, self._config.login_failure_window],
        )
        if ms_left != -1:
            seconds = max(1, math.ceil(ms_left / 1000))
            raise ServiceError(
                Ret.REQERR, f"错误次数过多，请{seconds}秒后重试", retry_after=seconds
            )
