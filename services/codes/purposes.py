"""What a verification code may be used for (one code, one mobile, one purpose)."""

from __future__ import annotations

import enum

from services.errors import Ret, ServiceError


class Purpose(enum.Enum):
    """What a code may be used for. A code is bound to its mobile and its purpose."""

    REGISTER = "register"
    LOGIN = "login"
    RESET_PASSWORD = "reset_password"
    CHANGE_MOBILE = "change_mobile"
    # To the logged-in user's CURRENT number, never to one the client names: proves the
    # owner is present when the mobile is changed (docs/SECURITY.md).
    CONFIRM_MOBILE = "confirm_mobile"
    # To the logged-in user's own number too: proves the owner asks for the account's
    # deletion (注销, services/accounts/deletion.py).
    DELETE_ACCOUNT = "delete_account"

    @property
    def needs_session(self) -> bool:
        """change_mobile, confirm_mobile and delete_account are asked for by a logged-in user."""
        return self in (Purpose.CHANGE_MOBILE, Purpose.CONFIRM_MOBILE, Purpose.DELETE_ACCOUNT)

    @property
    def to_own_number(self) -> bool:
        """Sent to the logged-in user's own number, never to one the client names."""
        return self in (Purpose.CONFIRM_MOBILE, Purpose.DELETE_ACCOUNT)

    @property
    def to_registered_number(self) -> bool:
        """Its code goes to the number of an existing account (whose number block's record
        must never keep the owner out: services/codes/fraud.py)."""
        return self in (
            Purpose.LOGIN,
            Purpose.RESET_PASSWORD,
            Purpose.CONFIRM_MOBILE,
            Purpose.DELETE_ACCOUNT,
        )

    @classmethod
    def parse(cls, value: object) -> Purpose:
        """The purpose a client asked for; absent means register (today's routes)."""
        if value is None or value == "":
            return cls.REGISTER
        try:
            return cls(value)
        except ValueError:
            raise ServiceError(Ret.PARAMERR, "验证码用途错误", field="purpose") from None
