"""Account deletion (注销): requested with a code sent to the account's number and the password,
then a cooling-off period (deletion.cooling_off_days) in which a login cancels it; the purge
(services/accounts/deletion_purge.py, `python -m tools.accounts purge`) completes it.

States of an `ih_account_deletion` row (one per user, the primary key):
pending -> cancelled (a login within the period)        -> pending again on a new request
pending -> purging (claimed by one purge run) -> done   (the account is anonymised)

Deletion during a login: `after_login` runs once the login's session exists and cancels a
pending deletion (the login answer says so). `request` ends every session after recording the
deletion. So whatever the interleaving, a deletion that stays pending has no session left: if
the login's check saw no pending row, its session was created before the row and therefore
before the request ended every session (docs/SECURITY.md, "Account deletion").
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import aiomysql

from services.accounts.consent import Clock, utc_now
from services.accounts.reauth import Reauthentication
from services.accounts.service import check_sms_code_format
from services.accounts.sessions import SessionStore
from services.accounts.users import UserRepository
from services.codes.purposes import Purpose
from services.codes.sms import SmsCodeService
from services.config import DeletionConfig
from services.errors import Ret, ServiceError
from services.store.db import Database
from services.validation import required_text

PENDING, CANCELLED, PURGING, DONE = "pending", "cancelled", "purging", "done"
ACCOUNT_DELETED = "账号已注销"


@dataclass(frozen=True)
class PendingDeletion:
    """A requested deletion: when it was asked for and when the purge may complete it."""

    requested_at: datetime.datetime
    purge_after: datetime.datetime

    def describe(self) -> dict[str, object]:
        """The API's shape (UTC, ISO 8601 with Z)."""
        return {
            "requested_at": self.requested_at.isoformat() + "Z",
            "purge_after": self.purge_after.isoformat() + "Z",
        }


class DeletionService:
    """Requests deletions, cancels them on login, tells whether one is pending."""

    def __init__(
        self,
        db: Database,
        users: UserRepository,
        reauth: Reauthentication,
        sms: SmsCodeService,
        sessions: SessionStore,
        config: DeletionConfig,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._users = users
        self._reauth = reauth
        self._sms = sms
        self._sessions = sessions
        self._config = config
        self._clock = clock

    async def request(
        self,
        user_id: int,
        sms_code: object,
        password: object,
        client_ip: str,
        *,
        image_code_id: object = None,
        image_code: object = None,
    ) -> PendingDeletion:
        """Ask for the deletion of the logged-in user: a `delete_account` code sent to the
        account's number and the password, both required.

        The password is checked first, within the login throttle and inside a hashing place
        (a guess of it is a login guess), so a wrong password leaves the code unused. The
        code is consumed once: of two requests at once with it, one passes. Every session of
        the user ends. Repeating a request for a pending deletion changes nothing and answers
        the same (the first request's dates).
        """
        sms_code, password = required_text(sms_code, password)
        check_sms_code_format(sms_code)
        user = await self._users.by_id(user_id)
        if user is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        async with self._reauth.guess(user, client_ip, image_code_id, image_code, password=True):
            await self._reauth.check_password(user, password)
        verified = await self._sms.verify_code(user.mobile, Purpose.DELETE_ACCOUNT, sms_code)
        async with self._sms.code_given_back_on_failure(verified):
            pending = await self._record_request(user.user_id)
            # After the row exists: a login that did not see it made its session before.
            await self._sessions.end_all(user.user_id)
        return pending

    async def _record_request(self, user_id: int) -> PendingDeletion:
        """Insert the pending row, or turn a cancelled one pending again; a pending row is
        kept as it is (a repeated request). One statement: all of it or nothing."""
        now = self._clock().replace(microsecond=0)
        purge_after = now + datetime.timedelta(days=self._config.cooling_off_days)
        await self._db.execute(
            # Assignments apply left to right: status is tested before it is set, last.
            "INSERT INTO ih_account_deletion (user_id, status, requested_at, purge_after)"
            " VALUES (%s, 'pending', %s, %s) ON DUPLICATE KEY UPDATE"
            " requested_at = IF(status = 'cancelled', VALUES(requested_at), requested_at),"
            " purge_after = IF(status = 'cancelled', VALUES(purge_after), purge_after),"
            " cancelled_at = IF(status = 'cancelled', NULL, cancelled_at),"
            " status = IF(status = 'cancelled', 'pending', status)",
            (user_id, now, purge_after),
            # Run twice (a retry on another Galera node), the second run finds it pending.
            idempotent=True,
        )
        state = await self._state(user_id)
        # Cancelled: a login right after this statement cancelled it (its answer says so).
        if state is None or state[0] not in (PENDING, CANCELLED):
            raise ServiceError(Ret.USERERR, ACCOUNT_DELETED)  # the purge has it already
        return PendingDeletion(state[1], state[2])

    async def pending(self, user_id: int) -> PendingDeletion | None:
        """The user's pending deletion, if any."""
        state = await self._state(user_id)
        if state is None or state[0] != PENDING:
            return None
        return PendingDeletion(state[1], state[2])

    async def after_login(self, user_id: int) -> bool:
        """Call once a login's session exists: cancels a pending deletion (True: the login
        answer says so). A deletion the purge has claimed or completed refuses the login
        (USERERR; the caller ends the session it made)."""
        state = await self._state(user_id)
        if state is None or state[0] == CANCELLED:
            return False
        if state[0] == PENDING:
            if await self._cancel(user_id):
                return True
            state = await self._state(user_id)  # the purge claimed it in between
        if state is not None and state[0] in (PURGING, DONE):
            raise ServiceError(Ret.USERERR, ACCOUNT_DELETED)
        return False

    async def _cancel(self, user_id: int) -> bool:
        now = self._clock().replace(microsecond=0)

        async def cancel(cur: aiomysql.Cursor) -> int:
            await cur.execute(
                "UPDATE ih_account_deletion SET status = 'cancelled', cancelled_at = %s"
                " WHERE user_id = %s AND status = 'pending'",
                (now, user_id),
            )
            changed: int = cur.rowcount
            return changed

        return await self._db.transaction(cancel) == 1

    async def _state(self, user_id: int) -> tuple[str, datetime.datetime, datetime.datetime] | None:
        row = await self._db.fetch_one(
            "SELECT status, requested_at, purge_after FROM ih_account_deletion WHERE user_id = %s",
            (user_id,),
        )
        return (str(row[0]), row[1], row[2]) if row else None
