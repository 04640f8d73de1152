"""Tokens for API clients: signed access tokens (JWT, ES256) and rotated refresh tokens.

An access token says who (`sub`, the user id) and which login (`sid`, the refresh-token
family) for at most 15 minutes; other services verify it with our JWKS alone. This server
also checks that its family is still live (one Redis read), so a revocation (logout, reuse of
a refresh token, password reset, change of mobile) takes effect here at once and elsewhere
within `tokens.access_ttl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import jwt

from services.accounts.sessions import Session
from services.accounts.users import User
from services.background import BackgroundTask
from services.config import Config, TokensConfig
from services.errors import Ret, ServiceError
from services.store.redisclient import RedisClient
from services.tokens.families import FAMILY_ID_RE, RefreshFamilies, RefreshToken
from services.tokens.keyring import (
    ALGORITHM,
    Keyring,
    KeyringError,
    development_keyring,
    load_keyring,
)

log = logging.getLogger(__name__)
TOKEN_TYPE = "at+jwt"  # RFC 9068's explicit type: no other JWT of ours passes for an access token
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti", "sid"]
EXPIRED_LOGIN = "登录已失效，请重新登录"
KEYRING_CHECK_SECONDS = 10.0  # how often the keyring file is looked at for a rotation
VERIFIED_CACHE_SIZE = 10_000  # access tokens whose signature was checked, per process


@dataclass(frozen=True)
class TokenPair:
    """What a login or a refresh gives an API client."""

    access_token: str
    expires_in: int
    refresh_token: str

    def as_dict(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


@dataclass(frozen=True)
class AccessClaims:
    """A verified access token: its user, its family (sid) and when it expires."""

    user_id: int
    family_id: str
    expires: int


def _stamp(status: os.stat_result) -> tuple[int, int]:
    """What changes when tools.keys replaces the keyring file (a new file each time)."""
    return status.st_ino, status.st_mtime_ns


class TokenService:
    """Issues, refreshes, verifies and revokes tokens; the keyring signs and verifies."""

    def __init__(
        self,
        families: RefreshFamilies,
        keyring: Keyring,
        config: TokensConfig,
        *,
        keyring_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._families = families
        self.keyring = keyring
        self._config = config
        self._keyring_path = keyring_path
        self._keyring_stamp = _stamp(keyring_path.stat()) if keyring_path else (0, 0)
        # The wall clock of iat/exp; tests replace it to issue tokens that have expired.
        self.clock = clock
        self._verified: dict[str, AccessClaims] = {}
        self._watcher = BackgroundTask()

    async def issue(self, user: User) -> TokenPair:
        """A new family for a user who just proved who they are (AccountService's login)."""
        refresh_token, parts = await self._families.start(user)
        return self._pair(user.user_id, parts.family_id, refresh_token)

    async def refresh(self, refresh_token: object) -> TokenPair:
        """A new pair for the family's current refresh token, which is used up by it.

        A token that was already rotated revokes its whole family: either the client or an
        attacker holds a stolen copy, and we cannot tell which (RFC 9700, section 4.14.2).
        """
        presented = RefreshToken.parse(refresh_token)
        if presented is None:
            raise ServiceError(Ret.SESSIONERR, EXPIRED_LOGIN, field="refresh_token")
        outcome, token = await self._families.rotate(presented)
        if outcome == "reused":
            log.warning(
                "refresh token reused: family %s of user %d revoked",
                presented.family_id,
                presented.user_id,
            )
        if token is None:
            raise ServiceError(Ret.SESSIONERR, EXPIRED_LOGIN, field="refresh_token")
        return self._pair(presented.user_id, presented.family_id, token)

    async def revoke(self, refresh_token: object) -> None:
        """Revoke the family of a refresh token; anything else is ignored (RFC 7009)."""
        presented = RefreshToken.parse(refresh_token)
        if presented is not None:
            await self._families.revoke(presented.user_id, presented.family_id, presented.digest)

    async def log_out(self, claims: AccessClaims) -> None:
        """Revoke the family an access token belongs to (logout of an API client)."""
        await self._families.revoke(claims.user_id, claims.family_id)

    async def session(self, access_token: str) -> Session | None:
        """Who an access token is for, if it verifies and its family is live; else None."""
        claims = self.verify(access_token)
        if claims is None:
            return None
        return await self._families.holder(claims.user_id, claims.family_id)

    def verify(self, access_token: str) -> AccessClaims | None:
        """The claims of an access token signed by a key of the ring and not expired."""
        claims = self._verified.get(access_token)
        if claims is None:
            claims = self._decode(access_token)
            if claims is None:
                return None
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            # Keyed by the whole token: only the very bytes that verified are ever looked up.
            self._verified[access_token] = claims
        return claims if self.clock() < claims.expires else None

    def jwks(self) -> dict[str, object]:
        """The public keys, for /.well-known/jwks.json."""
        return self.keyring.jwks()

    def _pair(self, user_id: int, family_id: str, refresh_token: str) -> TokenPair:
        now = int(self.clock())
        key = self.keyring.active
        claims = {
            "iss": self._config.issuer,
            "aud": self._config.audience,
            "sub": str(user_id),
            "iat": now,
            "exp": now + self._config.access_ttl,
            "jti": secrets.token_urlsafe(16),
            "sid": family_id,
        }
        headers = {"kid": key.kid, "typ": TOKEN_TYPE}
        access_token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)
        return TokenPair(access_token, self._config.access_ttl, refresh_token)

    def _decode(self, access_token: str) -> AccessClaims | None:
        try:
            header = jwt.get_unverified_header(access_token)
            key = self.keyring.verifying(header.get("kid"))
            if key is None or header.get("typ") != TOKEN_TYPE:
                return None
            claims = jwt.decode(
                access_token,
                key,
                algorithms=[ALGORITHM],  # pinned: never the header's choice (RFC 8725)
                audience=self._config.audience,
                issuer=self._config.issuer,
                # exp against self.clock below (PyJWT reads the system clock).
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return None
        sub, sid, exp = claims.get("sub"), claims.get("sid"), claims.get("exp")
        if not (isinstance(sub, str) and sub.isdigit() and len(sub) < 20):
            return None
        if not (isinstance(sid, str) and FAMILY_ID_RE.fullmatch(sid) and isinstance(exp, int)):
            return None
        return AccessClaims(int(sub), sid, exp)

    def start(self) -> None:
        """Look at the keyring file every few seconds: a rotation needs no restart."""
        if self._keyring_path is not None:
            self._watcher.start(self._watch_keyring)

    async def close(self) -> None:
        await self._watcher.close()

    async def _watch_keyring(self) -> None:
        while True:
            await asyncio.sleep(KEYRING_CHECK_SECONDS)
            await self.reload_keyring()

    async def reload_keyring(self) -> bool:
        """Load the keyring file again if it changed; True if it did. A keyring that no
        longer loads is logged and the old one kept: signing must not stop."""
        path = self._keyring_path
        if path is None:
            return False
        try:
            stamp = _stamp(await asyncio.to_thread(path.stat))
            if stamp == self._keyring_stamp:
                return False
            self.keyring = await asyncio.to_thread(load_keyring, path)
        except (OSError, KeyringError) as exc:
            log.error("keyring not reloaded, the previous one stays in use: %s", exc)
            return False
        self._keyring_stamp = stamp
        log.info("keyring reloaded: %s signs", self.keyring.active.kid)
        return True


@contextlib.asynccontextmanager
async def open_tokens(config: Config, redis: RedisClient) -> AsyncIterator[TokenService]:
    """The token service: the keyring of tokens.keyring (re-read when tools.keys changes it),
    or in development without one, the key derived from security.cookie_secret."""
    path = Path(config.tokens.keyring) if config.tokens.keyring else None
    keyring = load_keyring(path) if path else development_keyring(config.security.cookie_secret)
    families = RefreshFamilies(redis, config.tokens.refresh_ttl)
    tokens = TokenService(families, keyring, config.tokens, keyring_path=path)
    tokens.start()
    try:
        yield tokens
    finally:
        await tokens.close()
