"""One-step SMS sign-in (accounts.sms_login_signs_up): a right `login` code for a number with
no account creates the account, named after the mobile, and logs it in. The number is proven
by the code, as in registration; the account has no password until the owner sets one
(忘记密码, a reset_password code), and a password login to it is a wrong password."""

from __future__ import annotations

import asyncio
import secrets

from services.accounts.consent import ConsentPolicy
from services.accounts.users import User, UserRepository
from services.codes.sms import SmsCodeService, VerifiedCode
from services.errors import Ret, ServiceError

# Stored as the password hash of an account with no password: no hash format starts so, so
# it verifies nothing (passwords.PasswordHasher checks the decoy instead, same time as a
# wrong password). The random part tells two such rows apart (UserRepository.create's
# "is this row ours" after a broken connection).
NO_PASSWORD = "!no-password$"


async def sign_up_by_code(
    users: UserRepository,
    sms: SmsCodeService,
    verified: VerifiedCode,
    consent: ConsentPolicy,
    agree: object,
    client_address: str,
) -> User:
    """Create the account of the mobile its `login` code (`verified`) proved.

    Without consent (services/accounts/consent.py) nothing is created and the code is given
    back: the same code may be sent again with the consent. A concurrent registration of the
    same number wins the unique index: the code proved the number's owner, who is then
    logged in to that account.
    """
    try:
        agreed = consent.require(agree, "ihome", client_address)
    except ServiceError:
        await asyncio.shield(sms.give_back_code(verified))
        raise
    mobile = verified.mobile
    try:
        return await users.create(
            mobile, mobile, NO_PASSWORD + secrets.token_hex(8), consent=agreed
        )
    except ServiceError as taken:
        if taken.ret is not Ret.DATAEXIST or taken.field != "mobile":
            raise
        existing = await users.by_mobile(mobile)
        if existing is None:
            raise
        return existing
