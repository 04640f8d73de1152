"""Password hashing: argon2id for new hashes; Werkzeug and Django PBKDF2 hashes still verify.

With a host app (services/hostapp/), new hashes are in a format the host framework verifies
itself, so its own login and admin accept users created here: Werkzeug's
`pbkdf2:sha256:<rounds>$salt$hex` for ihome and news, Django's `argon2$argon2id$...` for
meiduo. A hash the host already verifies is never rewritten on login: for Django, a new
hash would change the session auth hash and end the user's sessions in the host app.

Hashing costs tens of milliseconds of CPU by design (argon2id: ~0.12 s here), so every call
runs in the executor, and within a bound: with `accounts.max_hashes_in_flight` hashes in flight
in this process, a request that would hash is refused at once (Overloaded, HTTP 503 with
Retry-After, services/codes/admission.py) instead of queueing behind a flood of logins until
every client times out (docs/SECURITY.md, "Login floods"). A request asks first
(`refuse_if_full()`, before it looks anything up or counts anything) and takes its place
(`place()`) only around its hashing, so requests refused without a hash (a CAPTCHA asked,
a limit reached) never hold one. hash() and verify() need a place: no hash escapes the bound.

A registration or a reset whose SMS code checked out has paid (an SMS, a CAPTCHA): refusing it
would waste both and, under a login flood, turn away the very users the SMS was for. It takes a
`paid_place()` instead: it waits, first come first served, up to `accounts.paid_hash_wait`
seconds for the next place freed, and while one waits every new login is refused at once
(Gate.admit_paid, services/codes/admission.py). Only a code that checked out can wait, and each
costs an SMS within the SMS limits, so a flood cannot fill the queue cheaply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

import argon2
from passlib.hash import django_pbkdf2_sha256
from werkzeug.security import check_password_hash, generate_password_hash

from services.codes.admission import Gate

WERKZEUG_PREFIXES = ("pbkdf2:", "scrypt:")  # ihome / news: pbkdf2:sha256:50000$salt$hex
DJANGO_PREFIX = "pbkdf2_sha256$"  # meiduo: pbkdf2_sha256$36000$salt$b64
DJANGO_ARGON2_PREFIX = "argon2$"  # Django's Argon2PasswordHasher: "argon2" + argon2-cffi's hash
# Django's Argon2PasswordHasher parameters (Django 3.2 and later: argon2id, t=2, m=102400 KiB,
# p=8), with a salt of 22 bytes (Django measures a salt's entropy by its length in characters,
# and its own salts are 22). A Django that lists Argon2PasswordHasher first keeps such a hash
# at its own login (must_update is false): no rewrite, so no new session auth hash ending the
# user's other sessions (docs/INTEGRATION.md, "Host apps").
DJANGO_ARGON2 = argon2.PasswordHasher(time_cost=2, memory_cost=102400, parallelism=8, salt_len=22)
# The hash formats each scheme writes, and the ones it keeps as they are.
SCHEMES = ("argon2", "werkzeug", "django")
PASSWORD_SCHEMES = {
    "standalone": "argon2",
    "ihome": "werkzeug",
    "news": "werkzeug",
    "meiduo": "django",
}
KEPT_FORMATS = {
    "werkzeug": WERKZEUG_PREFIXES,
    "django": (DJANGO_ARGON2_PREFIX, DJANGO_PREFIX),
}
NO_PASSWORD_PREFIX = "!"  # an account without a password (services/accounts/sms_signup.py)
T = TypeVar("T")
Args = TypeVarTuple("Args")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    needs_rehash: bool = False


HASHING_BUSY = "服务繁忙，请{seconds}秒后重试"


class Place:
    """A place in the bound on hashes in flight (PasswordHasher.place()): hashing needs one."""


class PasswordHasher:
    """Hashes and verifies passwords off the event loop, at most `gate.limit` requests at a time
    (no bound without a gate)."""

    def __init__(
        self,
        executor: Executor,
        gate: Gate | None = None,
        *,
        scheme: str = "argon2",
        werkzeug_iterations: int = 600000,
    ) -> None:
        self._executor = executor
        self._gate = gate
        self._scheme = scheme  # one of SCHEMES: which format new hashes take
        self._werkzeug_method = f"pbkdf2:sha256:{werkzeug_iterations}"
        self._argon2 = argon2.PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        # Checked when the mobile is unknown, so that answer takes as long as a wrong password.
        self._decoy_hash: str | None = None

    @property
    def in_flight(self) -> int:
        """Places taken now (0 without a bound)."""
        return self._gate.in_flight if self._gate is not None else 0

    @property
    def waiting(self) -> int:
        """Paid requests waiting for a place now (paid_place)."""
        return self._gate.waiting if self._gate is not None else 0

    def refuse_if_full(self) -> None:
        """Raise Overloaded now if a hash would be refused: before anything is done."""
        if self._gate is not None and self._gate.shedding():
            raise self._gate.refusal()

    @contextlib.asynccontextmanager
    async def paid_place(self) -> AsyncIterator[Place]:
        """Hold a place for a request that already paid (its SMS code verified: a registration,
        a reset): at once if one is free, else the next one freed within
        accounts.paid_hash_wait seconds, ahead of any new login; else raise Overloaded (the
        caller gives the code back)."""
        if self._gate is None:
            yield Place()
            return
        async with self._gate.admit_paid():
            yield Place()

    @contextlib.contextmanager
    def place(self) -> Iterator[Place]:
        """Hold a place for one request's hashes while the block runs, or raise Overloaded at
        once (the caller undoes what it did since refuse_if_full())."""
        if self._gate is None:
            yield Place()
            return
        with self._gate.admit():
            yield Place()

    async def hash(self, place: Place, password: str) -> str:
        """A new hash of password in this scheme's format."""
        return await self.run(place, self._new_hash, password)

    def _new_hash(self, password: str) -> str:
        if self._scheme == "werkzeug":
            return generate_password_hash(password, method=self._werkzeug_method)
        if self._scheme == "django":
            return "argon2" + DJANGO_ARGON2.hash(password)  # Django's own argon2 format
        return self._argon2.hash(password)

    async def verify(self, place: Place, stored_hash: str | None, password: str) -> Verdict:
        """Check password against a stored hash of any supported format (or a decoy if None,
        or if the account has no password: as long as a wrong password takes)."""
        if stored_hash is None or stored_hash.startswith(NO_PASSWORD_PREFIX):
            if self._decoy_hash is None:
                self._decoy_hash = await self.hash(place, "decoy password, never valid")
            await self.run(place, self._check, self._decoy_hash, password)
            return Verdict(ok=False)
        return await self.run(place, self._check, stored_hash, password)

    async def run(self, place: Place, function: Callable[[*Args], T], *args: *Args) -> T:
        """Run one hashing job in the executor, within a place of the bound."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _check(self, stored_hash: str, password: str) -> Verdict:
        ok, outdated = self._matches(stored_hash, password)
        kept = KEPT_FORMATS.get(self._scheme)
        if kept is not None:  # a host app's: rewrite only what the host cannot verify
            return Verdict(ok=ok, needs_rehash=ok and not stored_hash.startswith(kept))
        return Verdict(ok=ok, needs_rehash=ok and outdated)

    def _matches(self, stored_hash: str, password: str) -> tuple[bool, bool]:
        """(the password matches, the hash is not a current argon2id one)."""
        argon2_hash = stored_hash
        if stored_hash.startswith(DJANGO_ARGON2_PREFIX):
            argon2_hash = stored_hash[len("argon2") :]
        if argon2_hash.startswith("$argon2"):
            try:
                self._argon2.verify(argon2_hash, password)
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False, False
            return True, argon2_hash != stored_hash or self._argon2.check_needs_rehash(argon2_hash)
        if stored_hash.startswith(WERKZEUG_PREFIXES):
            try:
                return check_password_hash(stored_hash, password), True
            except ValueError:  # malformed hash in the table
                return False, True
        if stored_hash.startswith(DJANGO_PREFIX):
            try:
                return django_pbkdf2_sha256.verify(password, stored_hash), True
            except ValueError:  # malformed hash in the table
                return False, True
        return False, False
