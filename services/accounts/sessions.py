"""Server-side login sessions in Redis, referenced by an opaque id in a signed cookie.

A session id is "<user_id>.<random token>": the user id picks the hash slot ({user_id}) that
holds all of that user's sessions and their index (and the user's refresh-token families),
so ending every session of a user (after a password change or reset) and revoking its token
families is one atomic script on one Redis node, cluster or not.

Each session also notes the device it was started on (a short user-agent summary), the address
it was last used from and when (at most once a minute: `SEEN_EVERY`), for the device list of
my.html (services/accounts/devices.py). A session is named there by its handle, a one-way
function of its digest: the list never shows anything that would open a session.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import NotRequired, TypedDict

from services.accounts.users import User
from services.store import keys, redis_scripts
from services.store.coalesced import CoalescedReads
from services.store.redisclient import RedisClient


class Session(TypedDict):
    """What a session holds: who is logged in."""

    user_id: int
    name: str
    mobile: str
    # Sessions started before the device list have none of these.
    device: NotRequired[str]  # a short summary of the user agent (devices.device_summary)
    address: NotRequired[str]  # the client address it was last used from
    created: NotRequired[int]  # Unix s
    seen: NotRequired[int]  # Unix s, last use (noted at most once per SEEN_EVERY)
    host: NotRequired[str]  # with a host app: the digest of its session (services/hostapp/)


# Ends a user's host-app sessions but the one with the given digest (HostBridge.end_user).
HostSweep = Callable[[int, str | None], Awaitable[int]]


SEEN_EVERY = 60  # seconds: a session's last use is written at most this often
HANDLE_LENGTH = 20


def parse_session_id(session_id: str | None) -> tuple[int, str] | None:
    """(user_id, digest) of a session id, None if it is not one of ours."""
    if not session_id:
        return None
    user_part, dot, token = session_id.partition(".")
    if not (dot and token and user_part.isdigit()):
        return None
    return int(user_part), _digest(session_id)


def _digest(session_id: str) -> str:
    # Keyed by a hash of the id: a Redis dump does not hold usable session cookies.
    return hashlib.sha256(session_id.encode()).hexdigest()


def handle_of(digest: str) -> str:
    """The name of a session in the device list: one-way from its digest (as the end-by-handle
    script computes it), so it opens nothing and names no other user's session."""
    return hashlib.sha1(digest.encode()).hexdigest()[:HANDLE_LENGTH]


class SessionStore:
    """Creates, reads and ends sessions; each lives `ttl` seconds."""

    def __init__(self, redis: RedisClient, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl
        self._reads = CoalescedReads(redis)  # a session is read on every signed-in request
        self._create = redis_scripts.register(redis, "session_create")
        self._delete = redis_scripts.register(redis, "session_delete")
        self._end_all = redis_scripts.register(redis, "session_end_all")
        self._end_others = redis_scripts.register(redis, "session_end_others")
        self._end_handle = redis_scripts.register(redis, "session_end_handle")
        self._list = redis_scripts.register(redis, "session_list")
        self._touch = redis_scripts.register(redis, "session_touch")
        self.clock = time.time  # tests move it
        self.host_sweep: HostSweep | None = None  # set by a host app's bridge

    async def create(
        self, user: User, *, device: str = "", address: str = "", host: str = ""
    ) -> str:
        """Start a session for user and return its id (the cookie value); `device` and
        `address` say where (for the device list); `host`: its host-app session's digest."""
        session_id = f"{user.user_id}.{secrets.token_urlsafe(32)}"
        digest = _digest(session_id)
        now = int(self.clock())
        data = Session(
            user_id=user.user_id,
            name=user.name,
            mobile=user.mobile,
            device=device,
            address=address,
            created=now,
            seen=now,
        )
        if host:
            data["host"] = host
        await self._create(
            keys=[keys.session_key(user.user_id, digest), keys.session_index_key(user.user_id)],
            args=[json.dumps(data), self._ttl, digest],
        )
        return session_id

    async def get(self, session_id: str | None, *, seen_from: str | None = None) -> Session | None:
        """The session, or None. `seen_from`: the address of a request that uses it, noted
        with the time when the last note is SEEN_EVERY seconds old or more (one more round
        trip then, none otherwise)."""
        parsed = parse_session_id(session_id) if session_id else None
        if parsed is None:
            return None
        key = keys.session_key(*parsed)
        raw = await self._reads.get(key)
        if not raw:
            return None
        session: Session = json.loads(raw)  # written by create() or the touch script
        now = int(self.clock())
        if seen_from is not None and now - session.get("seen", 0) >= SEEN_EVERY:
            await self._touch(keys=[key], args=[now, seen_from, SEEN_EVERY])
            session["seen"], session["address"] = now, seen_from
        return session

    async def of_user(self, user_id: int) -> list[tuple[str, str, Session]]:
        """(handle, digest, session) of every live session of the user."""
        flat = await self._list(
            keys=[keys.session_index_key(user_id)], args=[keys.session_key(user_id, "")]
        )
        found = []
        for digest, raw in zip(flat[::2], flat[1::2], strict=True):
            digest = digest.decode() if isinstance(digest, bytes) else digest
            session: Session = json.loads(raw)
            found.append((handle_of(digest), digest, session))
        return found

    async def end_by_handle(self, user_id: int, handle: str, keep: str) -> int:
        """End the user's session named `handle` unless it is the one with digest `keep`:
        1 ended, 0 no such session, -1 it is `keep`."""
        return int(
            await self._end_handle(
                keys=[keys.session_index_key(user_id)],
                args=[keys.session_key(user_id, ""), handle, keep],
            )
        )

    async def end_others(self, user_id: int, keep: str, keep_family: str = "") -> int:
        """End every login of the user but the caller's, in one step: every session but the
        one with digest `keep` ("" for an API client) and every refresh-token family but
        `keep_family` ("" for a browser; services/tokens/). Returns how many ended. With a
        host app, its sessions of the user too, but the caller's own."""
        kept_host = None
        if self.host_sweep is not None and keep:
            raw = await self._redis.get(keys.session_key(user_id, keep))
            kept_host = json.loads(raw).get("host") if raw else None
        index_keys = [keys.session_index_key(user_id), keys.token_family_index_key(user_id)]
        args = [
            keys.session_key(user_id, ""),
            keep,
            keys.token_family_key(user_id, ""),
            keep_family,
        ]
        ended = int(await self._end_others(keys=index_keys, args=args))
        if self.host_sweep is not None:
            await self.host_sweep(user_id, kept_host)
        return ended

    async def delete(self, session_id: str | None) -> None:
        """End one session (logout, or the one a new login replaces)."""
        parsed = parse_session_id(session_id) if session_id else None
        if parsed is not None:
            user_id, digest = parsed
            await self._delete(
                keys=[keys.session_key(user_id, digest), keys.session_index_key(user_id)],
                args=[digest],
            )

    async def end_all(self, user_id: int) -> int:
        """End every session of a user, and revoke every refresh-token family of it in the same
        step (services/tokens/); returns how many sessions ended. Called when the credentials
        change (services/accounts/credentials.py), and by account deletion."""
        index_keys = [keys.session_index_key(user_id), keys.token_family_index_key(user_id)]
        prefixes = [keys.session_key(user_id, ""), keys.token_family_key(user_id, "")]
        ended = int(await self._end_all(keys=index_keys, args=prefixes))
        if self.host_sweep is not None:
            await self.host_sweep(user_id, None)  # and in the host app
        return ended
