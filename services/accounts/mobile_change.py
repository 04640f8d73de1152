"""Changing an account's mobile: the new number proven by its code, the owner by the current
factor (the password, or a code sent to the current number), so a session cookie alone moves
nothing (docs/SECURITY.md, "Change of mobile: a session is not enough")."""

from __future__ import annotations

import asyncio

from services.accounts.credentials import credentials_changed
from services.accounts.mobiles import require_mobile
from services.accounts.reauth import Reauthentication
from services.accounts.service import (
    SMS_CODE_RE,
    check_sms_code_format,
)
from services.accounts.sessions import SessionStore
from services.accounts.users import User, UserRepository
from services.codes.purposes import Purpose
from services.codes.sms import SmsCodeService, VerifiedCode
from services.errors import Ret, ServiceError
from services.validation import required_text

MISSING_FACTOR = "请填写登录密码或原手机号收到的验证码"


class MobileChangeService:
    """Moves a logged-in user to a new mobile."""

    def __init__(
        self,
        users: UserRepository,
        reauth: Reauthentication,
        sms: SmsCodeService,
        sessions: SessionStore,
    ) -> None:
        self._users = users
        self._reauth = reauth
        self._sms = sms
        self._sessions = sessions

    async def change(
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
        guess = self._reauth.guess(
            user, client_ip, image_code_id, image_code, password=current_sms_code is None
        )
        async with guess:
            current = await self._prove_current_factor(user, password, current_sms_code)
        try:
            verified = await self._sms.verify_code(new_mobile, Purpose.CHANGE_MOBILE, sms_code)
            async with self._sms.code_given_back_on_failure(verified):
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
            await self._reauth.check_password(user, password)
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
        await credentials_changed(self._sessions, user.user_id)
        return moved
