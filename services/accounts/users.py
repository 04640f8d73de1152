"""The user table (ih_user_profile, or the host app's: services/hostapp/tables.py): the
queries the flows need, nothing else."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass

import aiomysql
import pymysql

from services.accounts.consent import Consent, record_in
from services.accounts.registered import RegisteredMobiles
from services.errors import Ret, ServiceError
from services.hostapp.tables import IHOME, UserTable
from services.store.db import Database
from services.store.db_conflicts import WriteOutcomeUnknown

DUPLICATE_ENTRY = 1062
# Inserts sent again after the connection broke mid-INSERT and the row was not found.
RETRIES_AFTER_UNKNOWN_OUTCOME = 1


@dataclass(frozen=True)
class User:
    user_id: int
    name: str
    mobile: str
    password_hash: str
    avatar_url: str | None
    create_time: datetime.datetime

    def profile(self) -> dict[str, object]:
        """ihome's User.to_dict() shape."""
        return {
            "user_id": self.user_id,
            "name": self.name,
            "mobile": self.mobile,
            "avatar": self.avatar_url or "",
            "create_time": self.create_time.strftime("%Y-%m-%d %H:%M:%S"),
        }


class UserRepository:
    """Reads and writes the user table (`table`: ours, or the host app's).

    With `registered` (standalone only: server.open_services) every write that gives a row a
    mobile, or takes it away, writes through to the set of registered numbers
    (services/accounts/registered.py), in the order that keeps it exact."""

    def __init__(
        self,
        db: Database,
        table: UserTable = IHOME,
        registered: RegisteredMobiles | None = None,
    ) -> None:
        self._db = db
        self.table = table
        self.registered = registered
        self._select = f"SELECT {table.select_list()} FROM {table.table}"
        columns = [table.name_column, "mobile", table.password_column]
        columns += [column for column, _ in table.defaults]
        values = ["%s", "%s", "%s"] + [value for _, value in table.defaults]
        self._insert_sql = (
            f"INSERT INTO {table.table} ({', '.join(columns)}) VALUES ({', '.join(values)})"
        )

    async def mobile_exists(self, mobile: str) -> bool:
        """True if a user is registered with this mobile."""
        row = await self._db.fetch_one(
            f"SELECT 1 FROM {self.table.table} WHERE mobile = %s LIMIT 1", (mobile,)
        )
        return row is not None

    async def known_registered(self, mobile: str) -> bool | None:
        """The set's answer without MySQL: True (exact), False (may be wrong only the
        harmless way: MySQL refuses the registration), None (ask mobile_exists)."""
        if self.registered is None:
            return None
        return await self.registered.registered(mobile)

    async def can_log_in(self, user: User) -> bool:
        """False for an account its host app deactivated (Django's is_active = 0), which
        Django's own login refuses too."""
        if self.table.active_column is None:
            return True
        row = await self._db.fetch_one(
            f"SELECT {self.table.active_column} FROM {self.table.table} WHERE id = %s",
            (user.user_id,),
        )
        return row is not None and bool(row[0])

    async def note_login(self, user: User) -> None:
        """Record the login where the host app's own login does (last_login), if it does."""
        if self.table.last_login_column is not None:
            await self._db.execute(
                f"UPDATE {self.table.table} SET {self.table.last_login_column} = {self.table.now}"
                " WHERE id = %s",
                (user.user_id,),
                idempotent=True,
            )

    async def create(
        self, name: str, mobile: str, password_hash: str, *, consent: Consent | None = None
    ) -> User:
        """Insert a user; the UNIQUE indexes decide races (DATAEXIST, never a second row).

        On a Galera cluster a concurrent insert of the same mobile or name through another
        node makes this one fail certification; Database.execute runs it again, and it then
        meets the other row (DATAEXIST). If the connection breaks after the INSERT was sent,
        whether it committed is unknown: the row is looked up on the next node, and a row
        with this password hash (its salt is random: no other request made it) is ours.
        `consent` (services/accounts/consent.py) is written in the same transaction.
        """
        if self.registered is None:
            return await self._create(name, mobile, password_hash, consent)
        seen = await self.registered.epoch()  # before the row: an add must not outlive a removal
        user = await self._create(name, mobile, password_hash, consent)
        await self.registered.added(user.mobile, seen)  # after it committed; never raises
        return user

    async def _create(
        self, name: str, mobile: str, password_hash: str, consent: Consent | None
    ) -> User:
        for _ in range(RETRIES_AFTER_UNKNOWN_OUTCOME + 1):
            try:
                await self._insert(name, mobile, password_hash, consent)
            except WriteOutcomeUnknown:
                existing = await self.by_mobile(mobile)
                if existing is None:
                    continue  # not committed: insert again
                return self._ours_or_taken(existing, password_hash)
            except pymysql.err.IntegrityError as exc:
                if not (exc.args and exc.args[0] == DUPLICATE_ENTRY):
                    raise
                existing = await self.by_mobile(mobile)
                if existing is not None:
                    # Our own earlier attempt may have committed before its connection broke.
                    return self._ours_or_taken(existing, password_hash)
                if name != mobile and await self.by_name(name) is not None:
                    raise ServiceError(Ret.DATAEXIST, "用户名已存在", field="username") from None
                raise ServiceError(Ret.DATAEXIST, "手机号已注册", field="mobile") from None
            user = await self.by_mobile(mobile)
            assert user is not None  # just inserted, autocommit, causal reads on a cluster
            return user
        raise WriteOutcomeUnknown(2013, "the connection broke at every insert attempt")

    async def _insert(
        self, name: str, mobile: str, password_hash: str, consent: Consent | None
    ) -> None:
        """The user's row and, if given, its consent: one transaction, all or nothing."""

        sql = self._insert_sql
        if consent is None:  # one autocommit statement: a round trip, not three
            await self._db.execute(sql, (name, mobile, password_hash))
            return

        async def work(cur: aiomysql.Cursor) -> None:
            await cur.execute(sql, (name, mobile, password_hash))
            await record_in(cur, cur.lastrowid, consent)

        await self._db.transaction(work)

    @staticmethod
    def _ours_or_taken(existing: User, password_hash: str) -> User:
        if existing.password_hash == password_hash:
            return existing
        raise ServiceError(Ret.DATAEXIST, "手机号已注册", field="mobile")

    async def move_to_mobile(self, user: User, new_mobile: str) -> User:
        """Give user the new mobile; one named after the old mobile is renamed to the new
        one if that name is free. Each attempt is one statement: all of it or nothing.

        The UNIQUE index on mobile decides races for one number (DATAEXIST, no second row).
        The old number leaves the set of registered numbers before the row releases it (if
        that fails nothing changes) and the new one joins once the row holds it.
        """
        if self.registered is None:
            return await self._move(user, new_mobile)
        seen = await self.registered.removing(user.mobile)  # raises: the row is not touched
        try:
            moved = await self._move(user, new_mobile)
            await self.registered.added(new_mobile, seen)  # before the second removal's raise
        except BaseException:
            await asyncio.shield(self.registered.removed(user.mobile))
            await asyncio.shield(self.registered.still_held(user.mobile))  # not released?
            raise
        await self.registered.removed(user.mobile)
        return moved

    async def _move(self, user: User, new_mobile: str) -> User:
        rename = user.name == user.mobile
        try:
            await self._set_mobile(user, new_mobile, rename=rename)
        except ServiceError:
            if not rename:
                raise
            # The new name was the taken one (only the mobile index refuses without rename
            # too): keep the old name rather than refuse the change.
            await self._set_mobile(user, new_mobile, rename=False)
        moved = await self.by_id(user.user_id)
        if moved is None:
            raise ServiceError(Ret.SESSIONERR, "用户未登录")  # deleted meanwhile
        if moved.mobile != new_mobile:
            # Another request of this user changed the mobile first (WHERE mobile = old).
            raise ServiceError(Ret.DATAERR, "手机号已被修改，请刷新后重试", field="mobile")
        return moved

    async def _set_mobile(self, user: User, new_mobile: str, *, rename: bool) -> None:
        name = new_mobile if rename else user.name
        try:
            await self._db.execute(
                # WHERE mobile = old: of two concurrent changes of one user only one applies.
                f"UPDATE {self.table.table} SET mobile = %s, {self.table.name_column} = %s"
                " WHERE id = %s AND mobile = %s",
                (new_mobile, name, user.user_id, user.mobile),
                # Applied twice (a retry on another Galera node) the second run matches no
                # row and changes nothing; move_to_mobile then reads the result.
                idempotent=True,
            )
        except pymysql.err.IntegrityError as exc:
            if exc.args and exc.args[0] == DUPLICATE_ENTRY:
                if await self.by_mobile(new_mobile) is None:  # then the new name was taken
                    raise ServiceError(Ret.DATAEXIST, "用户名已存在", field="username") from None
                raise ServiceError(Ret.DATAEXIST, "手机号已注册", field="mobile") from None
            raise

    async def by_mobile(self, mobile: str) -> User | None:
        row = await self._db.fetch_one(f"{self._select} WHERE mobile = %s", (mobile,))
        return User(*row) if row else None

    async def by_name(self, name: str) -> User | None:
        row = await self._db.fetch_one(
            f"{self._select} WHERE {self.table.name_column} = %s", (name,)
        )
        return User(*row) if row else None

    async def count(self, *, mobile: str | None = None, name: str | None = None) -> int:
        """Users with this mobile or this name (0 or 1: both are unique)."""
        column, value = ("mobile", mobile) if mobile is not None else (self.table.name_column, name)
        row = await self._db.fetch_one(
            f"SELECT COUNT(*) FROM {self.table.table} WHERE {column} = %s", (value,)
        )
        return int(row[0]) if row else 0

    async def by_id(self, user_id: int) -> User | None:
        row = await self._db.fetch_one(f"{self._select} WHERE id = %s", (user_id,))
        return User(*row) if row else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        # Setting a value twice changes nothing: safe to repeat on another node.
        await self._db.execute(
            f"UPDATE {self.table.table} SET {self.table.password_column} = %s WHERE id = %s",
            (password_hash, user_id),
            idempotent=True,
        )

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Store new_hash if old_hash is still the user's (compare and set); True if new_hash
        is stored now. Read back rather than counted: a run repeated on another Galera node
        matches no row but leaves the same result, and the new hash's random salt means no
        other request stored that value."""
        await self._db.execute(
            f"UPDATE {self.table.table} SET {self.table.password_column} = %s"
            f" WHERE id = %s AND {self.table.password_column} = %s",
            (new_hash, user_id, old_hash),
            idempotent=True,
        )
        row = await self._db.fetch_one(
            f"SELECT {self.table.password_column} FROM {self.table.table} WHERE id = %s",
            (user_id,),
        )
        return row is not None and row[0] == new_hash
