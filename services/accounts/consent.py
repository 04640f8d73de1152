"""Consent to the 用户协议 and 隐私政策 on sign-up (PIPL art. 13-14; docs/SECURITY.md, "Consent").

One hook for every route that creates an account:

    consent = services.consent.require(agree, family, client_address)   # before the code is used
    user = await users.create(name, mobile, password_hash, consent=consent)  # same transaction

`require` refuses (PARAMERR, field "agree", nothing used up) or returns the `Consent` to
record, or None when the family's front-end sends no consent and the configuration lets it
register without one. `UserRepository.create(..., consent=)` writes the user and the consent
in one transaction (`record_in`), so an account never exists without the consent it gave.

How "our pages" are told apart from the ihome front-end on the same route: our pages always
send the field `agree`; a request that carries `agree` must carry JSON `true`. A request
without it is the tutorial front-end's, which knows nothing of consent: it is refused only if
`consent.require_from_ihome` (`require_from_news` for the news routes) is set. meiduo's form
has its own checkbox, `allow=on`, which its register view already requires: that is its
consent, recorded the same way.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiomysql

from services.config import ConsentConfig
from services.errors import Ret, ServiceError

Family = Literal["ihome", "news", "meiduo"]
MUST_AGREE = "请阅读并同意用户协议和隐私政策"
Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    """Now in UTC, naive (the DATETIME columns hold UTC)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Consent:
    """What one sign-up agreed to: the documents' versions, when, from where, through which
    family's routes (source)."""

    terms_version: str
    privacy_version: str
    source: str
    client_address: str
    agreed_at: datetime.datetime


class ConsentPolicy:
    """Decides whether a sign-up carries the consent it needs, and what to record."""

    def __init__(self, config: ConsentConfig, clock: Clock = utc_now) -> None:
        self._config = config
        self._clock = clock

    def require(self, agree: object, family: Family, client_address: str) -> Consent | None:
        """The consent of a sign-up request, or PARAMERR.

        `agree`: the request's `agree` value (None when absent; meiduo: True when its form
        said allow=on). Present, it must be True. Absent, it is refused on meiduo always and
        on ihome/news when the configuration requires consent from their front-ends;
        otherwise None (nothing to record).
        """
        if agree is None:
            if family == "meiduo" or self._required_without_field(family):
                raise ServiceError(Ret.PARAMERR, MUST_AGREE, field="agree")
            return None
        if agree is not True:
            raise ServiceError(Ret.PARAMERR, MUST_AGREE, field="agree")
        return Consent(
            terms_version=self._config.terms_version,
            privacy_version=self._config.privacy_version,
            source=family,
            client_address=client_address[:45],
            agreed_at=self._clock(),
        )

    def _required_without_field(self, family: Family) -> bool:
        if family == "news":
            return self._config.require_from_news
        return self._config.require_from_ihome


async def record_in(cur: aiomysql.Cursor, user_id: int, consent: Consent) -> None:
    """Insert the consent of user_id through cur (inside the transaction creating the user)."""
    await cur.execute(
        "INSERT INTO ih_user_consent (user_id, terms_version, privacy_version, source,"
        " client_address, agreed_at) VALUES (%s, %s, %s, %s, %s, %s)",
        (
            user_id,
            consent.terms_version,
            consent.privacy_version,
            consent.source,
            consent.client_address,
            consent.agreed_at,
        ),
    )
