"""Password hashing: argon2id for new hashes; Werkzeug and Django PBKDF2 hashes still verify.

Hashing costs tens of milliseconds of CPU by design, so every call runs in the executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

import argon2
from passlib.hash import django_pbkdf2_sha256
from werkzeug.security import check_password_hash

WERKZEUG_PREFIX = "pbkdf2:"  # ihome / news: pbkdf2:sha256:50000$salt$hex
DJANGO_PREFIX = "pbkdf2_sha256$"  # meiduo: pbkdf2_sha256$36000$salt$b64
T = TypeVar("T")
Args = TypeVarTuple("Args")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    needs_rehash: bool = False


class PasswordHasher:
    """Hashes and verifies passwords off the event loop."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._argon2 = argon2.PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        # Checked when the mobile is unknown, so that answer takes as long as a wrong password.
        self._decoy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """A new argon2id hash of password."""
        return await self._run(self._argon2.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> Verdict:
        """Check password against a stored hash of any supported format (or a decoy if None)."""
        if stored_hash is None:
            if self._decoy_hash is None:
                self._decoy_hash = await self.hash("decoy password, never valid")
            await self._run(self._check, self._decoy_hash, password)
            return Verdict(ok=False)
        return await self._run(self._check, stored_hash, password)

    async def _run(self, function: Callable[[*Args], T], *args: *Args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _check(self, stored_hash: str, password: str) -> Verdict:
        if stored_hash.startswith("$argon2"):
            try:
                self._argon2.verify(stored_hash, password)
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return Verdict(ok=False)
            return Verdict(ok=True, needs_rehash=self._argon2.check_needs_rehash(stored_hash))
        if stored_hash.startswith(WERKZEUG_PREFIX):
            return Verdict(ok=check_password_hash(stored_hash, password), needs_rehash=True)
        if stored_hash.startswith(DJANGO_PREFIX):
            try:
                ok = django_pbkdf2_sha256.verify(password, stored_hash)
            except ValueError:  # malformed hash in the table
                return Verdict(ok=False)
            return Verdict(ok=ok, needs_rehash=True)
        return Verdict(ok=False)
