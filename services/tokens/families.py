"""Refresh-token families in Redis: one per login of an API client, rotated on every use.

A refresh token is "<user_id>.<family id>.<secret>" (the secret: 256 random bits). Only its
SHA-256 is stored: the family's hash holds the digest of its current token and, as
`used:<digest>`, every digest it replaced. Presenting a replaced token again revokes the family
(reuse detection). The user id picks the hash slot ({user_id}) shared with the user's sessions:
SessionStore.end_all revokes every family with the sessions, in one script, and
SessionStore.end_others (退出其他设备) every family but the caller's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from services.accounts.sessions import Session
from services.accounts.users import User
from services.store import keys, redis_scripts
from services.store.coalesced import CoalescedReads
from services.store.redisclient import RedisClient, decoded

FAMILY_ID_RE = re.compile(r"[A-Za-z0-9_-]{16}")
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32): 256 bits


@dataclass(frozen=True)
class RefreshToken:
    """A refresh token taken apart (never logged: `digest` is what the store keeps)."""

    user_id: int
    family_id: str
    digest: str

    @classmethod
    def parse(cls, value: object) -> RefreshToken | None:
        """The parts of a refresh token of ours, None for anything else."""
        if not isinstance(value, str) or len(value) > 128:
            return None
        user_part, family_id, secret = [*value.split("."), "", ""][:3]
        if not (user_part.isdigit() and len(user_part) < 20 and value.count(".") == 2):
            return None
        if not (FAMILY_ID_RE.fullmatch(family_id) and SECRET_RE.fullmatch(secret)):
            return None
        return cls(int(user_part), family_id, digest(value))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(user_id: int, family_id: str) -> tuple[str, RefreshToken]:
    """A fresh refresh token of a family, and its parts."""
    token = f"{user_id}.{family_id}.{secrets.token_urlsafe(32)}"
    return token, RefreshToken(user_id, family_id, digest(token))


class RefreshFamilies:
    """Starts, rotates, reads and revokes refresh-token families; each lives `ttl` seconds."""

    def __init__(self, redis: RedisClient, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl
        self._reads = CoalescedReads(redis)  # a family is read on every bearer request
        self._create = redis_scripts.register(redis, "token_family_create")
        self._rotate = redis_scripts.register(redis, "token_rotate")
        self._revoke = redis_scripts.register(redis, "token_revoke")

    @staticmethod
    def _keys(user_id: int, family_id: str) -> list[str]:
        return [keys.token_family_key(user_id, family_id), keys.token_family_index_key(user_id)]

    async def start(self, user: User) -> tuple[str, RefreshToken]:
        """A new family for user: its first refresh token, and that token's parts."""
        token, parts = new_token(user.user_id, secrets.token_urlsafe(12))
        await self._create(
            keys=self._keys(user.user_id, parts.family_id),
            args=[parts.family_id, parts.digest, user.user_id, user.name, user.mobile, self._ttl],
        )
        return token, parts

    async def rotate(self, presented: RefreshToken) -> tuple[str, str | None]:
        """('rotated', the new token), or ('reused' | 'unknown', None): one atomic step, so of
        concurrent rotations with one token exactly one gets a new token."""
        token, parts = new_token(presented.user_id, presented.family_id)
        outcome = await self._rotate(
            keys=self._keys(presented.user_id, presented.family_id),
            args=[presented.family_id, presented.digest, parts.digest],
        )
        outcome = decoded(outcome)
        return outcome, token if outcome == "rotated" else None

    async def revoke(self, user_id: int, family_id: str, token_digest: str = "") -> bool:
        """Revoke a family: with one of its tokens' digest, or ("") unconditionally."""
        revoked = await self._revoke(
            keys=self._keys(user_id, family_id), args=[family_id, token_digest]
        )
        return bool(revoked)

    async def holder(self, user_id: int, family_id: str) -> Session | None:
        """Who holds a live family (as a session: user id, name, mobile), None if revoked."""
        name, mobile = await self._reads.hmget(
            keys.token_family_key(user_id, family_id), ["name", "mobile"]
        )
        if name is None or mobile is None:
            return None
        return Session(user_id=user_id, name=decoded(name), mobile=decoded(mobile))
