"""A logged-in user proving a secret again before a change that could take the account
(a new mobile, a deletion): the guess counted by the login throttle like a login's, the
password checked within a place of the hashing bound."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.accounts.login_throttle import LoginThrottle, account_key
from services.accounts.passwords import PasswordHasher
from services.accounts.users import User
from services.codes.admission import Overloaded
from services.config import AccountsConfig
from services.errors import Ret, ServiceError

WRONG_PASSWORD = "密码错误"


class Reauthentication:
    """The one way a logged-in user proves a secret again."""

    def __init__(
        self, hasher: PasswordHasher, throttle: LoginThrottle, config: AccountsConfig
    ) -> None:
        self._hasher = hasher
        self._throttle = throttle
        self._config = config

    @contextlib.asynccontextmanager
    async def guess(
        self,
        user: User,
        client_ip: str,
        image_code_id: object,
        image_code: object,
        *,
        password: bool,
    ) -> AsyncIterator[None]:
        """Count one guess of `user`'s secret (a `password`, or a code) before the block
        checks it: given back when the block proves it right, or when the server refused
        to check it (Overloaded: no guess was made); a refusal in the block stays counted."""
        if password:
            self._hasher.refuse_if_full()  # before anything is counted, as a login
        attempt = await self._throttle.begin(
            account_key(user.user_id, user.mobile),
            client_ip,
            image_code_id,
            image_code,
            password=password,
        )
        try:
            yield
        except Overloaded:
            await asyncio.shield(self._throttle.succeeded(attempt))
            raise
        await self._throttle.succeeded(attempt)

    async def check_password(
        self, user: User, password: str, *, field: str = "password", wrong: str = WRONG_PASSWORD
    ) -> None:
        """PWDERR (`wrong`, on `field`) unless `password` is the user's; a password longer
        than any allowed is refused without the hashing work (as a login)."""
        if len(password) > self._config.password_max:
            raise ServiceError(Ret.PWDERR, wrong, field=field)
        with self._hasher.place() as place:
            verdict = await self._hasher.verify(place, user.password_hash, password)
        if not verdict.ok:
            raise ServiceError(Ret.PWDERR, wrong, field=field)
