"""Admission control: shed what this process cannot serve in time, at once.

`Gate` is the bound itself (at most `limit` jobs in flight, the rest refused with `Overloaded`
at once): SMS sends (`SendGate`, below) and password hashes (services/accounts/passwords.py)
go through one. For sends:

Under a flood of sends a server that accepts everything queues everything: each request waits
behind the others for the CPU, the Redis and MySQL pools and the provider's connections, and
once the queue is longer than a client's patience every client times out, also the ones that
would have been served. A process therefore admits a bounded number of sends at a time, refused
beyond it with HTTP 503 and `Retry-After`.

A send takes its place only once its reservation succeeded (services/codes/sms.py): its CAPTCHA
used up, every limit taken. A request that costs its client nothing, a wrong CAPTCHA or a
refused limit, never holds a place, so a flood of them cannot crowd out the sends that pay
(issue 27, item 5). Two kinds of refusal follow:

- while the gate is already full, a send is refused before it has done anything (no CAPTCHA
  used, no limit counted, no guard set, no code stored) by the HTTP layer, before a handler
  exists (handlers/shedding.py); the client simply repeats the very same request;
- a send that finds the gate full only after its reservation has paid (its CAPTCHA used up,
  its limits taken): it waits, without CPU, for the next place that frees (first come, first
  served: a freed place goes to the longest waiter, and no new send passes the early check
  while one waits), at most `admission.paid_wait` seconds (3 s shipped: longer than
  `shed_delay`, since a send that paid is worth serving late rather than giving back its
  reservation; issue 26 goal 1); only then is it refused, giving
  back everything the reservation took, as after any refusal (guard, code, counts, fraud
  segments; its CAPTCHA stays used up, since the client paid with it). Without the wait, a
  flood of sends that all passed the early check at once would waste their reservations and
  CAPTCHAs on late refusals.

Password hashes use the same `Gate` (services/accounts/passwords.py): a login is refused at once
when every place is taken, while a registration or reset whose SMS code checked out has paid
and waits, the same way, up to `accounts.paid_hash_wait` (admit_paid). At most
MAX_WAITERS_PER_PLACE jobs per place may wait; one more is refused at once.

The bound moves between two values:

- the ceiling, `min(admission.max_sends_in_flight, ronglian.max_clients)`: the second is the
  provider's concurrency (the connections of the HTTP client every provider call goes
  through), so an admitted send never waits in that client's queue;
- down to `admission.min_sends_in_flight` while the event loop lags. A send's latency is the
  provider's plus the time its steps wait for the CPU. Once the CPU is saturated, each extra
  send in flight only lengthens every send's wait (Little's law); the loop's lag, sampled every
  LAG_INTERVAL, measures that wait. Above `admission.max_loop_lag` the bound shrinks by a tenth
  per sample; below it, it grows back by GROWTH per sample (additive increase, multiplicative
  decrease, as in TCP). `max_loop_lag: 0` keeps the bound at the ceiling.

A send shed before it did anything is answered only after `admission.shed_delay` seconds
(handlers/shedding.py; the wait is a timer, no CPU). A client that ignores Retry-After and
repeats at once (a bot, an impatient app, a load balancer's retry) would otherwise keep the
loop busy answering sheds: their lag held the bound at its floor and starved the admitted sends
(at 100 connections, 13 sends/s served among 2,700 refusals/s). Held, each connection comes
back at most once per `shed_delay`, and its request waits in the connection, not in the CPU.

A shed send is told to come back after a Retry-After spread over [base - base//2,
base + base//2] seconds (`admission.retry_after` is the base, and the mean): sends shed in the
same instant would otherwise all come back in the same instant, a burst that lags the loop for
the sends admitted then, and is shed again together.

The count is per process and needs no lock: it is only touched on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from services.background import BackgroundTask
from services.errors import Ret, ServiceError

OVERLOADED_REASON = "overloaded"
LAG_INTERVAL = 0.05  # seconds between two samples of the event loop's lag
SHRINK = 0.9  # the bound is multiplied by this for each lagging sample
GROWTH = 2  # sends the bound grows by for each sample without lag
# Jobs that paid may wait for a place, at most this many per place of the bound; beyond that
# they are refused at once (a bound on memory and on how long the queue can take to drain).
MAX_WAITERS_PER_PLACE = 8


SENDS_BUSY = "短信服务繁忙，请{seconds}秒后重试"


class Overloaded(ServiceError):
    """Too many jobs in flight: come back after `retry_after` seconds (HTTP 503)."""

    http_status = 503

    def __init__(self, retry_after: int, message: str = SENDS_BUSY, hold: float = 0.0) -> None:
        super().__init__(
            Ret.REQERR,
            message.format(seconds=retry_after),
            data={"reason": OVERLOADED_REASON},
            retry_after=retry_after,
        )
        # Seconds the HTTP layer waits before it answers (SendGate.shed_delay).
        self.hold = hold


class InFlightGauge(Protocol):
    """Where the count is shown (services/metrics.py: smsreg_sms_sends_in_flight)."""

    def inc(self) -> None: ...

    def dec(self) -> None: ...


class Gate:
    """At most `limit` jobs in flight in this process; the rest are refused (Overloaded)."""

    def __init__(
        self,
        limit: int,
        retry_after: int,
        *,
        message: str = SENDS_BUSY,
        gauge: InFlightGauge | None = None,
        paid_wait: float = 0.0,
    ) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.in_flight = 0
        # Seconds a job that already paid waits for a place (admit_paid); 0: refused at once.
        self.paid_wait = paid_wait
        self._message = message
        self._gauge = gauge
        # Jobs that paid and wait for a place, oldest first (admit_paid).
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Jobs that paid and wait for a place now."""
        return len(self._waiting)

    def shedding(self) -> bool:
        """Would a job be refused now? (The HTTP layer asks before it builds a handler.) Yes
        while the places are taken, and while jobs that already paid wait for one: they go
        first."""
        return self.in_flight >= self.limit or bool(self._waiting)

    def refusal(self) -> Overloaded:
        """The answer to a refused job."""
        return Overloaded(self.spread_retry_after(), self._message)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one job while the block runs, or raise Overloaded at once."""
        if self.shedding():
            raise self.refusal()
        self._take_a_place()
        try:
            yield
        finally:
            self._free_a_place()

    def _take_a_place(self) -> None:
        self.in_flight += 1
        if self._gauge is not None:
            self._gauge.inc()

    @contextlib.asynccontextmanager
    async def admit_paid(self) -> AsyncIterator[None]:
        """Hold a place for one job that already paid (a CAPTCHA and limits used, an SMS code
        verified) while the block runs: at once if one is free, else the next one freed
        within `paid_wait` seconds (first come, first served), else raise Overloaded."""
        if not self.shedding():
            self._take_a_place()
        else:
            await self._wait_for_a_place()
        try:
            yield
        finally:
            self._free_a_place()

    async def _wait_for_a_place(self) -> None:
        if self.paid_wait <= 0 or len(self._waiting) >= MAX_WAITERS_PER_PLACE * self.limit:
            raise self.refusal_after_paying()
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(handed)
        try:
            await asyncio.wait_for(asyncio.shield(handed), self.paid_wait)
        except (TimeoutError, asyncio.CancelledError) as stopped:
            if handed.done():  # a place was handed over just as the wait ended: it is ours
                if isinstance(stopped, asyncio.CancelledError):
                    self._free_a_place()
                    raise
                return
            handed.cancel()  # never handed over now; _free_a_place skips it
            with contextlib.suppress(ValueError):
                self._waiting.remove(handed)
            if isinstance(stopped, asyncio.CancelledError):
                raise
            raise self.refusal_after_paying() from None

    def refusal_after_paying(self) -> Overloaded:
        """The answer to a job that paid and found no place in time (answered at once)."""
        return Overloaded(self.spread_retry_after(), self._message)

    def _free_a_place(self) -> None:
        # The place goes to the longest waiter, unless the bound shrank below what is in flight.
        if self.in_flight <= self.limit:
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self.in_flight -= 1
        if self._gauge is not None:
            self._gauge.dec()

    def spread_retry_after(self) -> int:
        """Seconds a refused job is told to wait: the base, spread evenly by half of it."""
        spread = self.retry_after // 2
        return self.retry_after - spread + secrets.randbelow(2 * spread + 1)


class LagGauge(Protocol):
    """Where the last lag sample is shown (services/metrics.py: smsreg_event_loop_lag_seconds)."""

    def set(self, value: float) -> None: ...


class SendGate(Gate):
    """At most `limit` sends in flight in this process; the rest are shed (Overloaded).

    `limit` starts at `ceiling` and follows the loop's lag down to `floor` (observe_lag). A
    send that already paid waits for the next place freed (admit_paid), at most `paid_wait`.
    """

    def __init__(
        self,
        ceiling: int,
        retry_after: int,
        *,
        floor: int | None = None,
        max_loop_lag: float = 0.0,
        shed_delay: float = 0.0,
        paid_wait: float | None = None,
        gauge: InFlightGauge | None = None,
        lag_gauge: LagGauge | None = None,
    ) -> None:
        wait = shed_delay if paid_wait is None else paid_wait
        super().__init__(ceiling, retry_after, gauge=gauge, paid_wait=wait)
        self.ceiling = ceiling
        self.floor = ceiling if floor is None else min(floor, ceiling)
        self.shed_delay = shed_delay
        self._max_loop_lag = max_loop_lag
        self._lag_gauge = lag_gauge
        self._watcher = BackgroundTask()

    def refusal(self) -> Overloaded:
        """The answer to a shed send (held `shed_delay` seconds by the HTTP layer)."""
        return Overloaded(self.spread_retry_after(), self._message, self.shed_delay)

    def observe_lag(self, lag: float) -> None:
        """One sample of the event loop's lag (seconds): show it, move the bound."""
        if self._lag_gauge is not None:
            self._lag_gauge.set(lag)
        if self._max_loop_lag <= 0:
            return
        if lag > self._max_loop_lag:
            self.limit = max(self.floor, math.floor(self.limit * SHRINK))
        else:
            self.limit = min(self.ceiling, self.limit + GROWTH)

    def start(self) -> None:
        """Sample the loop's lag in the background (if the bound follows it or it is shown)."""
        follows = self._max_loop_lag > 0 and self.floor < self.ceiling
        if follows or self._lag_gauge is not None:
            self._watcher.start(self._watch_lag)

    async def close(self) -> None:
        await self._watcher.close()

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            # How much later than asked the loop came back to this task: the time every
            # ready callback (each step of each request in flight) now waits for the CPU.
            self.observe_lag(loop.time() - started - LAG_INTERVAL)
