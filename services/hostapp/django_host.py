"""meiduo: Django's cache sessions on django-redis, Django's CSRF cookie.

The cache backend keeps a session under the cache key `django.contrib.sessions.cache<key>`,
which django-redis turns into `<KEY_PREFIX>:<VERSION>:<that>` (`:1:django.contrib...` by
default) holding the session dict pickled; the cookie `sessionid` holds the 32-character
key. `request.user` is the user when the dict holds `_auth_user_id` (the pk as text),
`_auth_user_backend` (an entry of AUTHENTICATION_BACKENDS) and `_auth_user_hash`, an HMAC of
the user's password hash under SECRET_KEY: a new password ends every session, in Django and
here. meiduo's login also sets a `username` cookie its pages show, for 14 days.

Django's CSRF cookie `csrftoken` holds a 32-character secret; forms and X-CSRFToken carry
it or a 64-character masked copy of it (django/middleware/csrf.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import Any

from redis.asyncio import Redis

from services.accounts.sessions import Session
from services.accounts.users import User, UserRepository
from services.config import HostAppConfig
from services.hostapp.flask_host import glob_escape, user_id_in
from services.hostapp.framework import CookieOut, Cookies, HostFramework

CACHE_KEY_PREFIX = "django.contrib.sessions.cache"
CACHE_VERSION = 1
KEY_CHARS = string.ascii_lowercase + string.digits  # django.contrib.sessions VALID_KEY_CHARS
KEY_LENGTH = 32
CSRF_CHARS = string.ascii_letters + string.digits
CSRF_SECRET_LENGTH = 32
CSRF_COOKIE_AGE = 60 * 60 * 24 * 7 * 52  # Django's CSRF_COOKIE_AGE
USERNAME_COOKIE_AGE = 3600 * 24 * 14  # meiduo's username cookie
AUTH_HASH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"
AUTH_KEYS = ("_auth_user_id", "_auth_user_backend", "_auth_user_hash")


class DjangoHost(HostFramework):
    session_cookie = "sessionid"
    csrf_cookie = "csrftoken"

    def __init__(self, redis: Redis, config: HostAppConfig, users: UserRepository) -> None:
        super().__init__(redis, config)
        self._users = users
        self._prefix = f":{CACHE_VERSION}:{CACHE_KEY_PREFIX}"

    # --- sessions ------------------------------------------------------------------------

    def key_of(self, cookies: Cookies) -> str | None:
        value = cookies.get(self.session_cookie, "")
        if not (8 <= len(value) <= 40 and all(c in KEY_CHARS for c in value)):
            return None  # Django ignores a malformed session key too
        return self._prefix + value

    async def identity(self, key: str, record: dict[str, Any]) -> Session | None:
        user_id = user_id_in(record.get("_auth_user_id"))
        if user_id is None or record.get("_auth_user_backend") != self.config.django_auth_backend:
            return None
        user = await self._users.by_id(user_id)
        stored = record.get("_auth_user_hash")
        if user is None or not isinstance(stored, str):
            return None
        if not hmac.compare_digest(stored, self.auth_hash(user.password_hash)):
            return None  # the password changed since: Django flushes such a session too
        if not await self._users.can_log_in(user):
            return None  # deactivated since: ModelBackend.get_user gives nobody for it too
        return Session(user_id=user.user_id, name=user.name, mobile=user.mobile)

    def auth_hash(self, password_hash: str) -> str:
        """Django's salted_hmac(AUTH_HASH_SALT, password, SECRET_KEY).hexdigest()."""
        digest = getattr(hashlib, self.config.django_hash_algorithm)
        key = digest((AUTH_HASH_SALT + self.config.secret_key).encode()).digest()
        return hmac.new(key, password_hash.encode(), digest).hexdigest()

    def login_record(self, user: User, kept: dict[str, Any], persistent: bool) -> dict[str, Any]:
        # As django.contrib.auth.login: another user's session is flushed, one's own kept.
        if user_id_in(kept.get("_auth_user_id")) not in (None, user.user_id):
            kept = {}
        record = {k: v for k, v in kept.items() if k not in AUTH_KEYS}
        record.pop("_session_expiry", None)
        record["_auth_user_id"] = str(user.user_id)
        record["_auth_user_backend"] = self.config.django_auth_backend
        record["_auth_user_hash"] = self.auth_hash(user.password_hash)
        if not persistent:
            record["_session_expiry"] = 0  # meiduo: request.session.set_expiry(0)
        return record

    def new_key(self) -> tuple[str, str]:
        value = "".join(secrets.choice(KEY_CHARS) for _ in range(KEY_LENGTH))
        return self._prefix + value, value

    def login_cookies(
        self, cookie_value: str, user: User, record: dict[str, Any], persistent: bool
    ) -> list[CookieOut]:
        lifetime = self.config.session_lifetime if persistent else None
        return [
            CookieOut(self.session_cookie, cookie_value, lifetime),
            CookieOut("username", user.name, USERNAME_COOKIE_AGE, httponly=False),
        ]

    def logged_out(self, record: dict[str, Any]) -> dict[str, Any]:
        return {}  # django.contrib.auth.logout flushes the session

    def logout_cookies(self) -> list[CookieOut]:
        return [CookieOut(self.session_cookie, None), CookieOut("username", None)]

    def holds_user(self, record: dict[str, Any], user_id: int) -> bool:
        return user_id_in(record.get("_auth_user_id")) == user_id

    @property
    def scan_pattern(self) -> str:
        return glob_escape(self._prefix) + "*"

    # --- CSRF ----------------------------------------------------------------------------

    async def csrf_cookies(self, cookies: Cookies) -> list[CookieOut] | None:
        if csrf_secret(cookies.get(self.csrf_cookie, "")) is not None:
            return []
        secret = "".join(secrets.choice(CSRF_CHARS) for _ in range(CSRF_SECRET_LENGTH))
        return [CookieOut(self.csrf_cookie, secret, CSRF_COOKIE_AGE, httponly=False)]

    async def csrf_valid(self, cookies: Cookies, token: str) -> bool:
        secret = csrf_secret(cookies.get(self.csrf_cookie, ""))
        submitted = csrf_secret(token)
        return (
            secret is not None and submitted is not None and hmac.compare_digest(secret, submitted)
        )


def csrf_secret(token: str) -> str | None:
    """The secret of a Django CSRF token: the 32-character secret itself, or unmasked from its
    64-character form (mask + cipher, django.middleware.csrf._unmask_cipher_token)."""
    if not token or any(c not in CSRF_CHARS for c in token):
        return None
    if len(token) == CSRF_SECRET_LENGTH:
        return token
    if len(token) != 2 * CSRF_SECRET_LENGTH:
        return None
    mask, cipher = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
    size = len(CSRF_CHARS)
    return "".join(
        CSRF_CHARS[(CSRF_CHARS.index(c) - CSRF_CHARS.index(m)) % size]
        for c, m in zip(cipher, mask, strict=True)
    )
