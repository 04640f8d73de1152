"""ihome and news: Flask-Session on Redis and Flask-WTF's CSRF token.

Flask-Session keeps a session as `<SESSION_KEY_PREFIX><sid>` (prefix `session:`), the record
a serialised dict (pickle in 0.3, msgpack by default from 0.7), living
PERMANENT_SESSION_LIFETIME; the `session` cookie holds the sid, signed with itsdangerous
`Signer(SECRET_KEY, salt="flask-session", key_derivation="hmac")` when SESSION_USE_SIGNER is
set. A permanent session carries `_permanent: True`. The tutorial views read `user_id`
(login_required) and, ihome, `name` and `mobile`; news `mobile` and `nick_name`.

Flask-WTF keeps the raw CSRF token in the session (`csrf_token`) and hands pages a signed,
timed copy (`URLSafeTimedSerializer(SECRET_KEY, salt="wtf-csrf-token")`, an hour), which
ihome and news put in the `csrf_token` cookie for their JS to send as X-CSRFToken.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any

import itsdangerous
from redis.asyncio import Redis

from services.accounts.sessions import Session
from services.accounts.users import User
from services.config import HostAppConfig
from services.hostapp.framework import CookieOut, Cookies, HostFramework

CSRF_FIELD = "csrf_token"
CSRF_TIME_LIMIT = 3600  # WTF_CSRF_TIME_LIMIT's default
CSRF_RENEW_AFTER = 1800  # a page answer renews a token older than this
SID_BYTES = 32  # Flask-Session's SESSION_ID_LENGTH
# Which session key holds the display name, and every key a logout removes, per app.
NAME_KEY = {"ihome": "name", "news": "nick_name"}
IDENTITY_KEYS = {
    "ihome": ("user_id", "name", "mobile"),
    "news": ("user_id", "mobile", "nick_name", "is_admin"),
}


class FlaskHost(HostFramework):
    session_cookie = "session"
    csrf_cookie = "csrf_token"

    def __init__(self, redis: Redis, config: HostAppConfig) -> None:
        super().__init__(redis, config)
        secret = config.secret_key
        self._signer = itsdangerous.Signer(secret, salt="flask-session", key_derivation="hmac")
        self._csrf = itsdangerous.URLSafeTimedSerializer(secret, salt="wtf-csrf-token")
        self._name_key = NAME_KEY[config.kind]
        self._identity_keys = IDENTITY_KEYS[config.kind]

    # --- sessions ------------------------------------------------------------------------

    def key_of(self, cookies: Cookies) -> str | None:
        value = cookies.get(self.session_cookie)
        if not value:
            return None
        if self.config.use_signer:
            try:
                value = self._signer.unsign(value).decode()
            except (itsdangerous.BadSignature, UnicodeDecodeError):
                return None  # a tampered cookie is nobody
        return self.config.session_key_prefix + value

    async def identity(self, key: str, record: dict[str, Any]) -> Session | None:
        user_id = user_id_in(record.get("user_id"))
        mobile = record.get("mobile")
        if user_id is None or not isinstance(mobile, str):
            return None
        name = record.get(self._name_key)
        return Session(
            user_id=user_id, name=name if isinstance(name, str) else mobile, mobile=mobile
        )

    def login_record(self, user: User, kept: dict[str, Any], persistent: bool) -> dict[str, Any]:
        if user_id_in(kept.get("user_id")) not in (None, user.user_id):
            kept = {CSRF_FIELD: kept.get(CSRF_FIELD)}  # another user's: nothing else of it
        record = {k: v for k, v in kept.items() if k not in self._identity_keys}
        if not isinstance(record.get(CSRF_FIELD), str):
            record[CSRF_FIELD] = new_raw_token()  # the host's forms need one from now on
        record["_permanent"] = self.config.permanent_session and persistent
        record["user_id"] = user.user_id
        record["mobile"] = user.mobile
        record[self._name_key] = user.name
        return record

    def new_key(self) -> tuple[str, str]:
        sid = secrets.token_urlsafe(SID_BYTES)
        value = self._signer.sign(sid).decode() if self.config.use_signer else sid
        return self.config.session_key_prefix + sid, value

    def login_cookies(
        self, cookie_value: str, user: User, record: dict[str, Any], persistent: bool
    ) -> list[CookieOut]:
        permanent = self.config.permanent_session and persistent
        lifetime = self.config.session_lifetime if permanent else None
        token = self._csrf.dumps(record[CSRF_FIELD])
        return [
            CookieOut(self.session_cookie, cookie_value, lifetime),
            CookieOut(self.csrf_cookie, token, None, httponly=False),
        ]

    def logged_out(self, record: dict[str, Any]) -> dict[str, Any]:
        # As ihome's logout: everything but the CSRF token goes (news pops its keys).
        kept = {k: v for k, v in record.items() if k not in self._identity_keys}
        return kept if set(kept) - {"_permanent"} else {}

    def logout_cookies(self) -> list[CookieOut]:
        return []  # the record stays (with its CSRF token) or is deleted; the sid may stay

    def holds_user(self, record: dict[str, Any], user_id: int) -> bool:
        return user_id_in(record.get("user_id")) == user_id

    @property
    def scan_pattern(self) -> str:
        return glob_escape(self.config.session_key_prefix) + "*"

    # --- CSRF ----------------------------------------------------------------------------

    async def csrf_cookies(self, cookies: Cookies) -> list[CookieOut] | None:
        # Only a browser with a host session gets the host's token: making a session for
        # each anonymous GET would let a flood of them fill the host's Redis.
        key = self.key_of(cookies)
        record = await self.load(key) if key else None
        if key is None or record is None:
            return None
        raw = record.get(CSRF_FIELD)
        token = cookies.get(self.csrf_cookie)
        if token and isinstance(raw, str) and self._token_matches(token, raw, CSRF_RENEW_AFTER):
            return []
        if not isinstance(raw, str):
            raw = new_raw_token()
            await self.store(key, {**record, CSRF_FIELD: raw})
        return [CookieOut(self.csrf_cookie, self._csrf.dumps(raw), None, httponly=False)]

    async def csrf_valid(self, cookies: Cookies, token: str) -> bool:
        record = await self.load(self.key_of(cookies))
        raw = record.get(CSRF_FIELD) if record else None
        return isinstance(raw, str) and self._token_matches(token, raw, CSRF_TIME_LIMIT)

    def _token_matches(self, token: str, raw: str, max_age: int) -> bool:
        try:
            signed = self._csrf.loads(token, max_age=max_age)
        except itsdangerous.BadData:
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, raw)


def new_raw_token() -> str:
    """A raw CSRF token as Flask-WTF's generate_csrf makes one."""
    return hashlib.sha1(os.urandom(64)).hexdigest()


def user_id_in(value: object) -> int | None:
    """A user id as a session holds it (an int; Django and some apps store its text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def glob_escape(text: str) -> str:
    """text as a literal in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
