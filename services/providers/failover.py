"""Send through the configured providers in order, failing over only when that is safe.

A provider is skipped while its circuit breaker is open. The next provider is tried only
after a definite provider-side failure (Outcome.PROVIDER_FAILED): a refusal about the number
would be repeated by every provider, and an attempt that may have reached the provider
(Outcome.UNKNOWN) may already be sending the code, so trying again elsewhere could send two.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from services.accounts.mobiles import mask_mobile
from services.codes.costs import SmsPricing, to_units
from services.metrics import Metrics
from services.ops.history import SendHistory
from services.providers.base import (
    Channel,
    CodeMessage,
    CodeSender,
    Delivery,
    Outcome,
    ProviderError,
)

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Closed → open after `threshold` failures in a row → half-open after `cooldown` s.

    Half-open lets one request through as a probe: its success closes the breaker, its
    failure opens it for another cool-down. State is per process (each process learns the
    provider's health from its own traffic); `clock` is injectable for tests.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def failures(self) -> int:
        """Failures in a row so far (0 after a success)."""
        return self._failures

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a request go to this provider now? (Takes the half-open probe slot.)"""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> bool:
        """Count a failure; True if this opened (or re-opened) the breaker."""
        self._failures += 1
        was_probe = self._probing
        self._probing = False
        if was_probe or self._failures >= self.threshold:
            self._opened_at = self.clock()
            return True
        return False

    def release_probe(self) -> None:
        """A probe that ended without telling us anything about the provider's health."""
        self._probing = False


class FailoverSender:
    """Tries each provider that serves the channel, in the configured order."""

    def __init__(
        self,
        providers: Sequence[CodeSender],
        breakers: dict[str, CircuitBreaker],
        metrics: Metrics,
        pricing: SmsPricing,
        history: SendHistory,
    ) -> None:
        self.providers = list(providers)
        self.breakers = breakers
        self._metrics = metrics
        self.pricing = pricing
        self._history = history

    def names(self, channel: Channel) -> list[str]:
        """The providers that serve channel, in order."""
        return [p.name for p in self.providers if channel in p.channels]

    async def send(self, message: CodeMessage) -> Delivery:
        """Deliver through the first provider that takes it; raise the deciding ProviderError.

        An accepted send is priced (smsreg_sms_cost_yuan_total) and, like every send's end,
        counted in the console's history."""
        try:
            delivery = await self._send(message)
        except ProviderError as error:
            self._history.add(error.outcome.value)
            raise
        cost = self.pricing.send_cost(delivery.provider, delivery.channel)
        self._metrics.sms_cost.labels(delivery.provider, delivery.channel.value).inc(cost)
        self._history.add("sent")
        self._history.add("cost", to_units(cost))
        return delivery

    async def _send(self, message: CodeMessage) -> Delivery:
        last_error: ProviderError | None = None
        candidates = [p for p in self.providers if message.channel in p.channels]
        for provider in candidates:
            breaker = self.breakers[provider.name]
            if not breaker.allow():
                self._count(provider.name, message, "skipped_open")
                continue
            started = time.monotonic()
            try:
                message_id = await provider.send(message)
            except ProviderError as error:
                self._observe(provider.name, started)
                self._count(provider.name, message, error.outcome.value)
                if error.outcome is Outcome.NUMBER_REFUSED:
                    breaker.record_success()  # the provider works; the number is the problem
                    raise
                if breaker.record_failure():
                    log.error(
                        "provider %s failing (%s): circuit open for %s s",
                        provider.name,
                        error.status,
                        breaker.cooldown,
                    )
                if error.outcome is Outcome.UNKNOWN:
                    raise  # it may be sending: another provider could double-send
                last_error = error
                log.warning(
                    "provider %s did not send to %s (%s): trying the next one",
                    provider.name,
                    mask_mobile(message.mobile),
                    error.status,
                )
                continue
            except BaseException:
                breaker.release_probe()  # cancelled: says nothing about the provider
                raise
            self._observe(provider.name, started)
            self._count(provider.name, message, Outcome.SENT.value)
            breaker.record_success()
            return Delivery(provider.name, message_id, message.channel)
        if last_error is not None:
            raise last_error
        log.error("no provider available for %s: all circuits open", message.channel.value)
        raise ProviderError("none", "all_circuits_open", Outcome.PROVIDER_FAILED)

    def _count(self, provider: str, message: CodeMessage, outcome: str) -> None:
        self._metrics.provider_attempts.labels(provider, message.channel.value, outcome).inc()

    def _observe(self, provider: str, started: float) -> None:
        self._metrics.provider_call_seconds.labels(provider).observe(time.monotonic() - started)
