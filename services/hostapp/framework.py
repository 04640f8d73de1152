"""What the bridge needs of a host framework's sessions and CSRF tokens (Flask in
flask_host.py, Django in django_host.py), and the pieces they share."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from services.accounts.sessions import Session
from services.accounts.users import User
from services.config import HostAppConfig
from services.hostapp import plaindata

log = logging.getLogger(__name__)
SCAN_BATCH = 500  # keys per SCAN step and per pipelined GET when ending a user's sessions
Cookies = Mapping[str, str]  # the request's cookies, name -> value


@dataclass(frozen=True)
class CookieOut:
    """A cookie the answer sets (value) or clears (None)."""

    name: str
    value: str | None
    max_age: int | None = None  # None: a browser-session cookie
    httponly: bool = True


@dataclass(frozen=True)
class HostSession:
    """Who a host session names: its key in the host's Redis and our view of its user."""

    key: str
    session: Session


class HostFramework(abc.ABC):
    """A host framework's sessions (in its own Redis) and CSRF tokens."""

    # The cookie whose value names the host session, and the one holding its CSRF token.
    session_cookie: str
    csrf_cookie: str

    def __init__(self, redis: Redis, config: HostAppConfig) -> None:
        self.redis = redis
        self.config = config

    # --- sessions ------------------------------------------------------------------------

    @abc.abstractmethod
    def key_of(self, cookies: Cookies) -> str | None:
        """The Redis key the session cookie names (its signature checked), or None."""

    @abc.abstractmethod
    async def identity(self, key: str, record: dict[str, Any]) -> Session | None:
        """The user a host record says is logged in, or None (nobody, or no longer valid)."""

    @abc.abstractmethod
    def login_record(self, user: User, kept: dict[str, Any], persistent: bool) -> dict[str, Any]:
        """A logged-in record for user, keeping the plain keys `kept` of the one it replaces."""

    @abc.abstractmethod
    def new_key(self) -> tuple[str, str]:
        """(Redis key, cookie value) of a new session."""

    @abc.abstractmethod
    def login_cookies(
        self, cookie_value: str, user: User, record: dict[str, Any], persistent: bool
    ) -> list[CookieOut]:
        """The cookies a login through us sets (record: the session it wrote), as the host's
        own login would."""

    @abc.abstractmethod
    def logged_out(self, record: dict[str, Any]) -> dict[str, Any]:
        """What the host's own logout leaves of a record (empty: delete it)."""

    @abc.abstractmethod
    def logout_cookies(self) -> list[CookieOut]:
        """The cookies the host's own logout clears."""

    @abc.abstractmethod
    def holds_user(self, record: dict[str, Any], user_id: int) -> bool:
        """True if the record is a login of user_id (cheap: no lookup)."""

    @property
    @abc.abstractmethod
    def scan_pattern(self) -> str:
        """A SCAN pattern matching every session record of the host."""

    # --- CSRF ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def csrf_cookies(self, cookies: Cookies) -> list[CookieOut] | None:
        """The cookies an answer to a GET sets so the host's CSRF token is there (none if it
        is); None if the host's token cannot be had without storing a session for it (the
        caller hands out our own, stateless token instead)."""

    @abc.abstractmethod
    async def csrf_valid(self, cookies: Cookies, token: str) -> bool:
        """True if token is the host's CSRF token for this browser."""

    # --- shared --------------------------------------------------------------------------

    async def load(self, key: str | None) -> dict[str, Any] | None:
        """The record at key as plain data; None if absent or not plain data (logged)."""
        if key is None:
            return None
        raw = await self.redis.get(key)
        if raw is None:
            return None
        return self.decoded(key, raw)

    def decoded(self, key: str, raw: bytes | str) -> dict[str, Any] | None:
        try:
            return plaindata.decode(raw, self.config.serialization)
        except plaindata.NotPlainData as exc:
            # Never unpickled: a record naming objects is a logged-out browser.
            log.warning("host session %s refused: %s", key[:48], exc)
            return None

    async def store(self, key: str, record: dict[str, Any]) -> None:
        raw = plaindata.encode(record, self.config.serialization)
        await self.redis.set(key, raw, ex=self.config.session_lifetime)
