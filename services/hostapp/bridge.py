"""The bridge between our sessions and the host app's: one login, seen by both.

The host's session cookie is the truth about who is logged in, as the rest of the host app
sees it. A login through us writes a host session (a new one: the browser's previous host
session is replaced, keeping its plain keys such as Flask-WTF's CSRF token) and our own,
which notes a digest of the host session's key. Our session counts only while the browser's
host cookie still names that host session and it still holds the user: a logout in the host
app (which empties or deletes its record, or answers with another cookie) is a logout for
us, and a login through us that raced a logout in the host app leaves whichever cookie the
browser kept deciding for both, never half of each. A host session the host app made itself
(its own login, its admin) is a login for us too, without a session of ours.

Ending a user's sessions (password reset, number change, logging out everywhere, account
deletion) also ends their host sessions: the host keeps no index of a user's sessions, so its
records are scanned (SCAN, in batches) and those of the user logged out as the host would.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from services.accounts.sessions import Session, SessionStore
from services.accounts.users import User
from services.hostapp import plaindata
from services.hostapp.framework import SCAN_BATCH, CookieOut, Cookies, HostFramework

log = logging.getLogger(__name__)


def host_digest(key: str) -> str:
    """What our session notes of its host session: the key itself would open it."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class HostBridge:
    """Logins, logouts and who is logged in, for our sessions and the host app's at once."""

    def __init__(self, framework: HostFramework, sessions: SessionStore) -> None:
        self.framework = framework
        self._sessions = sessions
        sessions.host_sweep = self.end_user  # SessionStore.end_all / end_others call it

    async def signed_in(
        self, session_id: str | None, cookies: Cookies, *, seen_from: str | None = None
    ) -> Session | None:
        """Who is logged in for this browser: by its host session, with our session's device
        details when ours is the one that started it."""
        framework = self.framework
        key = framework.key_of(cookies)
        record, ours = await asyncio.gather(
            framework.load(key), self._sessions.get(session_id, seen_from=seen_from)
        )
        host = await framework.identity(key, record) if key and record else None
        if ours is not None and (
            host is None
            or ours.get("host") != host_digest(key or "")
            or ours["user_id"] != host["user_id"]
        ):
            await self._sessions.delete(session_id)  # its host session ended or was replaced
            ours = None
        return ours if ours is not None else host

    async def log_in(
        self,
        user: User,
        session_id: str | None,
        cookies: Cookies,
        *,
        device: str,
        address: str,
        persistent: bool,
    ) -> tuple[str, list[CookieOut]]:
        """Start a host session and ours for user, replacing this browser's; returns our
        session id and the host cookies to set."""
        framework = self.framework
        old_key = framework.key_of(cookies)
        kept = await framework.load(old_key) or {}
        key, cookie_value = framework.new_key()
        record = framework.login_record(user, kept, persistent)
        await framework.store(key, record)
        if old_key is not None:
            await framework.redis.delete(old_key)  # rotated: a planted sid never logs in
        await self._sessions.delete(session_id)
        try:
            new_id = await self._sessions.create(
                user, device=device, address=address, host=host_digest(key)
            )
        except BaseException:
            await framework.redis.delete(key)
            raise
        return new_id, framework.login_cookies(cookie_value, user, record, persistent)

    async def log_out(self, session_id: str | None, cookies: Cookies) -> list[CookieOut]:
        """End this browser's session, ours and the host's (as the host's logout would);
        returns the host cookies to clear."""
        await self._sessions.delete(session_id)
        framework = self.framework
        key = framework.key_of(cookies)
        record = await framework.load(key)
        if key is not None and record is not None:
            await self._leave(key, record)
        return framework.logout_cookies()

    async def end_user(self, user_id: int, keep: str | None = None) -> int:
        """Log the user out of every host session but the one whose digest is `keep`;
        returns how many."""
        framework = self.framework
        ended = 0
        batch: list[str] = []
        async for key in framework.redis.scan_iter(match=framework.scan_pattern, count=SCAN_BATCH):
            batch.append(key.decode() if isinstance(key, bytes) else key)
            if len(batch) >= SCAN_BATCH:
                ended += await self._end_in(batch, user_id, keep)
                batch = []
        if batch:
            ended += await self._end_in(batch, user_id, keep)
        return ended

    async def _end_in(self, keys: list[str], user_id: int, keep: str | None) -> int:
        ended = 0
        for key, raw in zip(keys, await self.framework.redis.mget(keys), strict=True):
            if raw is None or (keep is not None and host_digest(key) == keep):
                continue
            try:  # our own records may share the prefix on a shared Redis: not the host's
                record = plaindata.decode(raw, self.framework.config.serialization)
            except plaindata.NotPlainData:
                continue
            if self.framework.holds_user(record, user_id):
                await self._leave(key, record)
                ended += 1
        return ended

    async def _leave(self, key: str, record: dict[str, Any]) -> None:
        rest = self.framework.logged_out(record)
        if rest:
            await self.framework.store(key, rest)
        else:
            await self.framework.redis.delete(key)


__all__ = ["CookieOut", "HostBridge", "host_digest"]
