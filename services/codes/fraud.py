"""SMS-pumping defence: conversion tracking and a breaker per segment, budget shedding.

Every send is recorded in three *segments*: the mobile's number block (first 7 digits, 号段),
the client's network (IPv4 /24, IPv6 /48) and the client address (IPv6: its /64, which one
subscriber gets). A code that is verified counts as a *conversion* of the segments of the send
that delivered it. Each segment keeps rolling counts of sends and conversions over
`fraud.window` seconds in `fraud.buckets` buckets (one Redis hash per segment, old buckets pruned,
a TTL on every key), and a breaker:

    normal ──(sends >= min_sends and conversion < min_conversion)──> elevated
    elevated: every request touching it needs a solved proof of work (services/captcha/pow.py), and
              at most `elevated_sends` sends per probation round; a round that ends with
              conversion still below min_conversion ──> blocked for `cooldown` seconds
    blocked ──(cool-down over)──> elevated (a new probation round)
    elevated ──(conversion back above the threshold, or the window rolled on)──> normal

Every fraud key carries one hash tag ({fraud}, services/store/keys.py), so one Lua script
(services/store/lua/fraud_admit.lua) decides and counts all three segments of a send atomically, on
standalone Redis and Cluster alike: a send refused by one segment takes nothing in the others,
so a cap can never be overshot and no request is refused for a place another one only held.
What a send took is given back (one script) when a later limit of the send refuses or the
provider fails, and a verification converts the segments of its send (one script).

The request's *tier* (good record / unknown newcomer / poor record) sets how much of the global
hourly budget it may use (`fraud.budget_share_*`): as spend approaches the budget the worst
segments and then newcomers are refused first, segments with a good record keep being served.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from services.captcha.pow import ProofOfWork
from services.config import FraudConfig
from services.errors import Ret, ServiceError
from services.metrics import Metrics
from services.store import keys, redis_scripts
from services.store.redis_scripts import ScriptArg, ScriptCall
from services.store.redisclient import RedisClient, decoded
from services.validation import mask_mobile

if TYPE_CHECKING:
    from services.codes.receipts import RedisPipeline

log = logging.getLogger(__name__)


class Tier(enum.IntEnum):
    """How much of the global budget a request may use (the worse the record, the less)."""

    GOOD = 0
    NEWCOMER = 1
    POOR = 2


STATES = ("normal", "elevated", "blocked")


@dataclass(frozen=True)
class Segment:
    """One segment of a send: kind is blk (number block), net (/24 or /48) or ip."""

    kind: str
    value: str

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value}"

    @property
    def redis_keys(self) -> list[str]:
        return [keys.fraud_counts_key(self.name), keys.fraud_state_key(self.name)]


def keys_of(segments: tuple[Segment, ...]) -> list[str]:
    """The counts and state keys of each segment, in pairs (the scripts' KEYS)."""
    return [key for segment in segments for key in segment.redis_keys]


def segments_of(mobile: str, client_ip: str) -> tuple[Segment, ...]:
    """The number block, the network and the address of one send, in a fixed order."""
    block = Segment("blk", mobile[:7])
    try:
        # An address, or the network per-client limits count it by (IPv6: its /64).
        address = ipaddress.ip_network(client_ip, strict=False).network_address
    except ValueError:
        # Not an address (a Unix socket peer, say): the whole network is one segment.
        return (block, Segment("net", "unknown"), Segment("ip", "unknown"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        network = ipaddress.ip_network(f"{address}/24", strict=False)
        return (block, Segment("net", str(network)), Segment("ip", str(address)))
    network = ipaddress.ip_network(f"{address}/48", strict=False)
    subscriber = ipaddress.ip_network(f"{address}/64", strict=False)
    return (block, Segment("net", str(network)), Segment("ip", str(subscriber)))


@dataclass
class Admission:
    """What one admitted send took in its segments, to be given back if it is not sent."""

    segments: tuple[Segment, ...]
    any_poor: bool = False
    any_good: bool = False
    # the bucket the send was counted in, in every segment; None once given back
    bucket: int | None = None

    @property
    def tier(self) -> Tier:
        # A poor record anywhere outweighs a good one; a good record anywhere (the number
        # block or network has converted before) vouches for an otherwise unknown client.
        if self.any_poor:
            return Tier.POOR
        return Tier.GOOD if self.any_good else Tier.NEWCOMER


@dataclass(frozen=True)
class SegmentStatus:
    """One segment as the operator command shows it."""

    name: str
    state: str
    sends: int
    conversions: int
    since_ms: int
    until_ms: int


class FraudGuard:
    """Admits sends per segment, counts conversions, shares the budget by tier."""

    def __init__(
        self,
        redis: RedisClient,
        config: FraudConfig,
        *,
        pow_service: ProofOfWork,
        metrics: Metrics,
    ) -> None:
        self._redis = redis
        self._config = config
        self._pow = pow_service
        self._metrics = metrics
        self._admit = redis_scripts.register(redis, "fraud_admit")
        self._release = redis_scripts.register(redis, "fraud_release")
        self._convert = redis_scripts.register(redis, "fraud_convert")
        self._bucket_ms = max(1, config.window * 1000 // config.buckets)
        self._alert_until = 0.0

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def _ttl(self) -> int:
        return self._config.window + math.ceil(self._bucket_ms / 1000)

    async def admit(self, mobile: str, client_ip: str, altcha: object) -> Admission | None:
        """Take one send in each segment of (mobile, client_ip), or raise the refusal.

        Raises REQERR pow_required (with a challenge) when a segment is elevated and no valid,
        unused proof of work came with the request; REQERR segment_blocked while one is
        blocked. Returns None when the breaker is switched off.
        """
        if not self._config.enabled:
            return None
        segments = segments_of(mobile, client_ip)
        pow_given = False
        if altcha is not None and altcha != "":
            pow_given = await self._pow.redeem(altcha)
        # One script judges every segment (each breaker moves) and counts the send in all of
        # them, or, if one refuses, in none: a refused request holds no place anywhere.
        reply = cast("list[int | str]", await self._admit_call(segments, pow_given).run())
        outcome, wait_ms, poor, good, bucket = (int(value) for value in reply[:5])
        for index, segment in enumerate(segments):
            changed, sends, conversions = reply[5 + 3 * index : 8 + 3 * index]
            if changed:
                self._state_changed(segment, str(changed), int(sends), int(conversions))
        if outcome == 2:
            seconds = max(1, math.ceil(wait_ms / 1000))
            raise ServiceError(
                Ret.REQERR,
                f"当前网络或号段存在异常请求，请{seconds}秒后重试",
                data={"reason": "segment_blocked"},
                retry_after=seconds,
            )
        if outcome == 1:
            if self._metrics is not None:
                self._metrics.pow_challenges.inc()
            raise ServiceError(
                Ret.REQERR,
                "请完成安全验证后重试",
                data={"reason": "pow_required", "challenge": self._pow.challenge()},
                retry_after=0,
            )
        return Admission(segments, any_poor=bool(poor), any_good=bool(good), bucket=bucket)

    def _admit_call(self, segments: tuple[Segment, ...], pow_given: bool) -> ScriptCall:
        config = self._config
        args: list[ScriptArg] = [
            self._bucket_ms,
            config.buckets,
            config.min_sends,
            config.min_conversion_percent,
            config.elevated_sends,
            config.cooldown * 1000,
            int(pow_given),
            self._ttl(),
        ]
        return ScriptCall(self._admit, keys_of(segments), args)

    def _state_changed(self, segment: Segment, state: str, sends: int, conversions: int) -> None:
        # Logged once: the script reports a change only to the request that made it.
        log.warning(
            "fraud segment %s is now %s (%d sends, %d conversions in the window)",
            segment.name,  # a number block is 7 digits of 11: no mobile is revealed
            state,
            sends,
            conversions,
        )
        if self._metrics is not None:
            self._metrics.fraud_segment_state.labels(segment.kind, state).inc()

    async def release(self, admission: Admission | None) -> None:
        """Give back the send an admission counted in its segments (it was not sent)."""
        if admission is None or admission.bucket is None:
            return
        bucket, admission.bucket = admission.bucket, None
        call = ScriptCall(self._release, keys_of(admission.segments), [bucket])
        if not await redis_scripts.give_back_together(self._redis, [call]):
            log.warning("could not give back a fraud segment place; it expires by itself")

    def budget_share(self, tier: Tier | None) -> float:
        """The part of the global budget a request of this tier may use."""
        if tier is None or tier == Tier.GOOD:
            return 1.0
        if tier == Tier.NEWCOMER:
            return self._config.budget_share_newcomer
        return self._config.budget_share_poor

    def record_sent(
        self, pipe: RedisPipeline, mobile: str, admission: Admission, code_ttl: int
    ) -> None:
        """After a send: remember its segments' keys with the code's lifetime, so a
        verification converts them. The write is added to `pipe` (the send's other writes)."""
        record = json.dumps(keys_of(admission.segments))
        pipe.set(keys.fraud_sent_key(mobile), record, ex=code_ttl)

    async def converted(self, mobile: str) -> None:
        """A code sent to mobile was verified: count a conversion in the segments of its send
        (one script takes the send's record and counts)."""
        if not self._config.enabled:
            return
        args: list[ScriptArg] = [self._bucket_ms, self._ttl()]
        if await ScriptCall(self._convert, [keys.fraud_sent_key(mobile)], args).run():
            log.debug("conversion counted for %s", mask_mobile(mobile))

    def budget_spent(self, used: int, budget: int) -> None:
        """Alert (ERROR log + metric) when the global budget is alert_ratio spent."""
        if budget <= 0 or used < budget * self._config.budget_alert_ratio:
            return
        if self._metrics is not None:
            self._metrics.fraud_budget_alerts.inc()
        now = time.monotonic()
        if now >= self._alert_until:
            self._alert_until = now + 60
            log.error(
                "SMS budget alert: %d%% of the hourly budget spent (%d of %d): newcomers and"
                " poor segments are refused first",
                100 * used // budget,
                used,
                budget,
            )

    async def segments(self, state: str | None = None) -> list[SegmentStatus]:
        """Segments not in the normal state (optionally only one state), for operators."""
        found = []
        async for key in self._redis.scan_iter(match=keys.fraud_state_key("*"), count=500):
            name = keys.segment_of_state_key(key)
            status = await self.status(name)
            if status.state != "normal" and (state is None or status.state == state):
                found.append(status)
        return sorted(found, key=lambda s: (s.state, s.name))

    async def status(self, name: str) -> SegmentStatus:
        """One segment's state and window counts (state 'normal' if it has no breaker)."""
        counts_key, state_key = keys.fraud_counts_key(name), keys.fraud_state_key(name)
        state = await self._redis.hgetall(state_key)
        counts = await self._redis.hgetall(counts_key)
        current = int(time.time() * 1000) // self._bucket_ms
        sends = conversions = 0
        for reply, value in counts.items():
            field_name = decoded(reply)
            bucket = int(field_name[2:])
            if bucket > current - self._config.buckets:
                if field_name.startswith("s:"):
                    sends += int(value)
                else:
                    conversions += int(value)
        return SegmentStatus(
            name,
            decoded(state.get("state", "normal")),
            sends,
            conversions,
            int(state.get("since", 0)),
            int(state.get("until", 0)),
        )

    async def unblock(self, name: str) -> bool:
        """Operator: put a segment back to normal and forget its window (True if it had any)."""
        counts_key, state_key = keys.fraud_counts_key(name), keys.fraud_state_key(name)
        removed = await self._redis.delete(state_key)
        removed += await self._redis.delete(counts_key)
        if removed:
            log.warning("fraud segment %s reset to normal by an operator", name)
        return bool(removed)
