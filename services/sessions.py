"""Server-side login sessions in Redis, referenced by an opaque id in a signed cookie."""

from __future__ import annotations

import hashlib
import json
import secrets

from services import keys
from services.users import User


def session_key(session_id: str) -> str:
    # Keyed by a hash of the id: a Redis dump does not hold usable session cookies.
    return keys.session_key(hashlib.sha256(session_id.encode()).hexdigest())


class SessionStore:
    """Creates, reads and deletes sessions; each lives `ttl` seconds."""

    def __init__(self, redis, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl

    async def create(self, user: User) -> str:
        """Start a session for user and return its id (the cookie value)."""
        session_id = secrets.token_urlsafe(32)
        data = {"user_id": user.user_id, "name": user.name, "mobile": user.mobile}
        await self._redis.set(session_key(session_id), json.dumps(data), ex=self._ttl)
        return session_id

    async def get(self, session_id: str | None) -> dict | None:
        if not session_id:
            return None
        raw = await self._redis.get(session_key(session_id))
        return json.loads(raw) if raw else None

    async def delete(self, session_id: str | None) -> None:
        if session_id:
            await self._redis.delete(session_key(session_id))
