"""Changing the password while logged in (my.html, 修改密码): the old password proves the
owner is present (a session cookie alone changes nothing), then the new one replaces it and
every session of the user ends (services/accounts/credentials.py); the caller starts a new
session for the browser that made the change (docs/SECURITY.md)."""

from __future__ import annotations

import dataclasses

from services.accounts.credentials import credentials_changed
from services.accounts.passwords import PasswordHasher
from services.accounts.reauth import Reauthentication
from services.accounts.sessions import SessionStore
from services.accounts.users import User, UserRepository
from services.config import AccountsConfig
from services.errors import Ret, ServiceError
from services.validation import required_text

WRONG_OLD_PASSWORD = "原密码错误"
CHANGED_MEANWHILE = "密码刚刚已被修改，请用新密码重新登录后再试"


class PasswordChangeService:
    """Sets a logged-in user's new password, proven by the old one."""

    def __init__(
        self,
        users: UserRepository,
        hasher: PasswordHasher,
        reauth: Reauthentication,
        sessions: SessionStore,
        config: AccountsConfig,
    ) -> None:
        self._users = users
        self._hasher = hasher
        self._reauth = reauth
        self._sessions = sessions
        self._config = config

    async def change(
        self,
        user_id: int,
        old_password: object,
        password: object,
        password2: object,
        client_ip: str,
        *,
        image_code_id: object = None,
        image_code: object = None,
    ) -> User:
        """Replace the password of user_id when old_password is right.

        The old password is checked within the login throttle (a wrong one is a login
        guess: counted per account, address and pair, a CAPTCHA past the account's
        threshold). The new hash replaces the old only if the old is still stored (compare
        and set), so of two changes racing from one old password exactly one applies; the
        other is refused (CHANGED_MEANWHILE or a wrong old password). Then every session of
        the user ends; the caller renews its own.
        """
        old_password, password, password2 = required_text(old_password, password, password2)
        if password != password2:
            raise ServiceError(Ret.PARAMERR, "两次密码不一致", field="password2")
        low, high = self._config.password_min, self._config.password_max
        if not low <= len(password) <= high:
            raise ServiceError(Ret.PARAMERR, f"密码长度应为{low}-{high}位", field="password")
        user = await self._users.by_id(user_id)
        if user is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")

        guess = self._reauth.guess(user, client_ip, image_code_id, image_code, password=True)
        async with guess:
            await self._reauth.check_password(
                user, old_password, field="old_password", wrong=WRONG_OLD_PASSWORD
            )
        with self._hasher.place() as place:
            new_hash = await self._hasher.hash(place, password)
        if not await self._users.replace_password_hash(user.user_id, user.password_hash, new_hash):
            raise ServiceError(Ret.DATAERR, CHANGED_MEANWHILE, field="old_password")
        # Should ending the sessions fail (DBERR), the password is changed already: the user
        # repeats the change with the new password as the old one, which ends them then.
        await credentials_changed(self._sessions, user.user_id)
        # With the new hash: a host app's session of the new login carries a digest of it.
        return dataclasses.replace(user, password_hash=new_hash)
