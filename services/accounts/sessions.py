"""Server-side login sessions in Redis, referenced by an opaque id in a signed cookie.

A session id is "<user_id>.<random token>": the user id picks the hash slot ({user_id}) that
holds all of that user's sessions and their index (and the user's refresh-token families),
so ending every session of a user (after a password change or reset) and revoking its token
families is one atomic script on one Redis node, cluster or not.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import TypedDict

from services.accounts.users import User
from services.store import keys, redis_scripts
from services.store.redisclient import RedisClient


class Session(TypedDict):
    """What a session holds: who is logged in."""

    user_id: int
    name: str
    mobile: str


def _parse(session_id: str) -> tuple[int, str] | None:
    """(user_id, digest) of a session id, None if it is not one of ours."""
    user_part, dot, token = session_id.partition(".")
    if not (dot and token and user_part.isdigit()):
        return None
    return int(user_part), _digest(session_id)


def _digest(session_id: str) -> str:
    # Keyed by a hash of the id: a Redis dump does not hold usable session cookies.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Creates, reads and ends sessions; each lives `ttl` seconds."""

    def __init__(self, redis: RedisClient, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl
        self._create = redis_scripts.register(redis, "session_create")
        self._delete = redis_scripts.register(redis, "session_delete")
        self._end_all = redis_scripts.register(redis, "session_end_all")

    async def create(self, user: User) -> str:
        """Start a session for user and return its id (the cookie value)."""
        session_id = f"{user.user_id}.{secrets.token_urlsafe(32)}"
        digest = _digest(session_id)
        data = Session(user_id=user.user_id, name=user.name, mobile=user.mobile)
        await self._create(
            keys=[keys.session_key(user.user_id, digest), keys.session_index_key(user.user_id)],
            args=[json.dumps(data), self._ttl, digest],
        )
        return session_id

    async def get(self, session_id: str | None) -> Session | None:
        parsed = _parse(session_id) if session_id else None
        if parsed is None:
            return None
        raw = await self._redis.get(keys.session_key(*parsed))
        if not raw:
            return None
        session: Session = json.loads(raw)  # written by create() alone
        return session

    async def delete(self, session_id: str | None) -> None:
        """End one session (logout, or the one a new login replaces)."""
        parsed = _parse(session_id) if session_id else None
        if parsed is not None:
            user_id, digest = parsed
            await self._delete(
                keys=[keys.session_key(user_id, digest), keys.session_index_key(user_id)],
                args=[digest],
            )

    async def end_all(self, user_id: int) -> int:
        """End every session of a user (password changed or reset, mobile changed, user gone),
        and revoke every refresh-token family of it in the same step (services/tokens/);
        returns how many sessions ended."""
        index_keys = [keys.session_index_key(user_id), keys.token_family_index_key(user_id)]
        prefixes = [keys.session_key(user_id, ""), keys.token_family_key(user_id, "")]
        return int(await self._end_all(keys=index_keys, args=prefixes))
