"""The user table (ih_user_profile): the queries the flows need, nothing else."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pymysql

from services.db import Database
from services.errors import Ret, ServiceError

DUPLICATE_ENTRY = 1062
USER_COLUMNS = "id, name, mobile, password_hash, avatar_url, create_time"


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
    """Reads and writes ih_user_profile."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def mobile_exists(self, mobile: str) -> bool:
        """True if a user is registered with this mobile."""
        row = await self._db.fetch_one(
            "SELECT 1 FROM ih_user_profile WHERE mobile = %s LIMIT 1", (mobile,)
        )
        return row is not None

    async def create(self, name: str, mobile: str, password_hash: str) -> User:
        """Insert a user; the UNIQUE indexes decide races (DATAEXIST, never a second row)."""
        try:
            await self._db.execute(
                "INSERT INTO ih_user_profile (name, mobile, password_hash) VALUES (%s, %s, %s)",
                (name, mobile, password_hash),
            )
        except pymysql.err.IntegrityError as exc:
            if exc.args and exc.args[0] == DUPLICATE_ENTRY:
                if "uq_ih_user_profile_name" in str(exc.args[-1]) and name != mobile:
                    raise ServiceError(Ret.DATAEXIST, "用户名已存在", field="username") from None
                raise ServiceError(Ret.DATAEXIST, "手机号已注册", field="mobile") from None
            raise
        user = await self.by_mobile(mobile)
        assert user is not None  # just inserted, autocommit
        return user

    async def by_mobile(self, mobile: str) -> User | None:
        row = await self._db.fetch_one(
            f"SELECT {USER_COLUMNS} FROM ih_user_profile WHERE mobile = %s", (mobile,)
        )
        return User(*row) if row else None

    async def by_name(self, name: str) -> User | None:
        row = await self._db.fetch_one(
            f"SELECT {USER_COLUMNS} FROM ih_user_profile WHERE name = %s", (name,)
        )
        return User(*row) if row else None

    async def count(self, *, mobile: str | None = None, name: str | None = None) -> int:
        """Users with this mobile or this name (0 or 1: both are unique)."""
        column, value = ("mobile", mobile) if mobile is not None else ("name", name)
        row = await self._db.fetch_one(
            f"SELECT COUNT(*) FROM ih_user_profile WHERE {column} = %s", (value,)
        )
        return int(row[0]) if row else 0

    async def by_id(self, user_id: int) -> User | None:
        row = await self._db.fetch_one(
            f"SELECT {USER_COLUMNS} FROM ih_user_profile WHERE id = %s", (user_id,)
        )
        return User(*row) if row else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._db.execute(
            "UPDATE ih_user_profile SET password_hash = %s WHERE id = %s",
            (password_hash, user_id),
        )
