"""Signed cookies checked once per process: Tornado's signature check, remembered per value.

Every signed-in request reads the session cookie, and `/auth/verify` (nginx asks it before
every request of the app it guards) does little else: Tornado's check of the signature
(parse the fields, HMAC-SHA256, compare) and its parse of the Cookie header into a
SimpleCookie were a tenth of that check's CPU (docs/PERFORMANCE.md). A cookie value whose
signature verified is remembered here, keyed by its whole text: only the very bytes that
verified are ever accepted without the HMAC, as `TokenService.verify` does for access
tokens. Its age is checked on every use, as Tornado does (`max_age_days` from the timestamp
it signed), so nothing is accepted that Tornado would refuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import tornado.web
from tornado.httputil import parse_cookie

CACHE_SIZE = 10_000  # cookie values, per process; emptied when full


def cookie_value(header: str | None, name: str) -> str | None:
    """The cookie `name` of a Cookie header, as Tornado's `get_cookie` reads it (the same
    parser, without building a SimpleCookie of every cookie)."""
    return parse_cookie(header).get(name) if header else None


class VerifiedCookies:
    """Values of signed cookies whose signature verified (version 2, what Tornado writes)."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._verified: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.clock = clock  # tests move it

    def value(self, name: str, signed: str | None, max_age_days: float) -> bytes | None:
        """The value of cookie `name` signed as `signed`, or None, as Tornado's
        `decode_signed_value` answers."""
        if not signed:
            return None
        known = self._verified.get((name, signed))
        if known is None:
            value = tornado.web.decode_signed_value(
                self._secret, name, signed, max_age_days=max_age_days, clock=self.clock
            )
            if value is None or not signed.startswith("2|"):
                return value  # refused; or an old version-1 value, checked every time
            if len(self._verified) >= CACHE_SIZE:
                self._verified.clear()
            # Version 2 is "2|<key version>|<timestamp>|<name>|<value>|<signature>", each
            # field "<length>:<text>"; the key version and the timestamp are digits.
            signed_at = int(signed.split("|", 3)[2].partition(":")[2])
            known = self._verified[(name, signed)] = (value, signed_at)
        value, signed_at = known
        return value if signed_at >= self.clock() - max_age_days * 86400 else None
