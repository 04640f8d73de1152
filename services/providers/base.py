"""What every provider client shares: the message, the outcome classes and the error type."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from services.errors import Ret, ServiceError

SEND_FAILED_MESSAGE = "短信发送失败，请稍后重试"


class Outcome(enum.Enum):
    """How a send attempt ended, as far as we can know: this decides failover and refunds.

    Only a definite non-send for a reason on the provider's side may be retried elsewhere;
    a refusal about this number would be refused by every provider, and an attempt whose
    request may have reached the provider (timeout, reset, unreadable answer) may have sent
    the code already, so a second provider would double-send.
    """

    SENT = "sent"
    PROVIDER_FAILED = "provider_failed"  # definitely not sent; the provider's fault: fail over
    NUMBER_REFUSED = "number_refused"  # definitely not sent; about this number: do not fail over
    UNKNOWN = "unknown"  # may have been sent (timeout after writing): do not fail over


class Channel(enum.Enum):
    SMS = "sms"
    VOICE = "voice"


@dataclass(frozen=True)
class CodeMessage:
    """One verification code to deliver; `reference` is our opaque send id (or empty)."""

    mobile: str
    code: str
    ttl_minutes: int
    channel: Channel = Channel.SMS
    reference: str = ""


@dataclass(frozen=True)
class Delivery:
    """A provider accepted the message: who, and its id for matching delivery receipts."""

    provider: str
    message_id: str
    channel: Channel


class ProviderError(ServiceError):
    """A send that did not succeed; the client sees THIRDERR."""

    def __init__(self, provider: str, status: str, outcome: Outcome) -> None:
        super().__init__(Ret.THIRDERR, SEND_FAILED_MESSAGE)
        self.provider = provider
        # The provider's own code, or unreachable / timeout / http_<code> / bad_body / ...
        self.status = status
        self.outcome = outcome


class CodeSender(Protocol):
    """A provider client: sends one code or raises ProviderError with its outcome."""

    name: str
    channels: frozenset[Channel]

    async def send(self, message: CodeMessage) -> str:
        """Return the provider's message id."""
        ...


# curl error numbers (tornado's CurlError.errno) that prove nothing reached the provider.
_CURL_NOT_CONNECTED = {5: "proxy_unresolved", 6: "unresolved", 7: "refused"}
_CURL_TIMEOUT = 28


def classify_transport_error(exc: BaseException) -> tuple[str, Outcome]:
    """(status, outcome) of a request that got no HTTP answer.

    Only a connection that was never made is a definite non-send. A timeout or reset after
    connecting may have delivered the request: the provider may be sending the code now.
    """
    errno = getattr(exc, "errno", None)
    if isinstance(exc, ConnectionRefusedError) or (
        getattr(exc, "code", None) == 599 and errno in _CURL_NOT_CONNECTED
    ):
        status = _CURL_NOT_CONNECTED.get(errno, "refused") if isinstance(errno, int) else "refused"
        return status, Outcome.PROVIDER_FAILED
    if getattr(exc, "code", None) == 599 and errno == _CURL_TIMEOUT:
        # curl words a timeout in the connect phase "Connection timed out after N ms";
        # then no byte of the request was written.
        if "Connection timed out" in str(exc):
            return "connect_timeout", Outcome.PROVIDER_FAILED
        return "timeout", Outcome.UNKNOWN
    return "unreachable", Outcome.UNKNOWN


def classify_http_status(code: int) -> Outcome:
    """A non-200 HTTP answer: a 5xx (or a proxy's 4xx) means the provider did not take it."""
    return Outcome.PROVIDER_FAILED if 400 <= code < 600 else Outcome.UNKNOWN
