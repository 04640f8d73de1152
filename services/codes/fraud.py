"""SMS-pumping defence: conversion tracking per segment, proof of work of rising cost, budget
shedding, and a breaker only where a block cannot hit a bystander.

Every send is recorded in up to three *segments*: the client address (IPv6: its /64, which
one subscriber gets), the client's network (IPv4 /24, IPv6 /48) and, for a code to a number
that need not be registered yet (register, the new number of a change), the mobile's number
block (first 7 digits, 号段). A code that is verified counts as a *conversion* of the segments
of the send that delivered it. Each segment keeps rolling counts of sends and conversions over
`fraud.window` seconds in `fraud.buckets` buckets (one Redis hash per segment, old buckets
pruned, a TTL on every key).

Who sends weighs more than where it goes, and only the narrowest segment can refuse
(docs/FRAUD.md has the attacks that shaped this):

    address:  normal ──(sends >= min_sends, conversion < min_conversion)──> elevated
              elevated: proof of work, probation rounds of `elevated_sends`; a round that
              converts too little ──> blocked for `cooldown` ──> elevated
    network, number block: never blocked. Converting too little, each asks for proof of work
              of level 1, rising by `levels_per_send` with every unconverted send past
              `min_sends` (each level doubles the work, up to `pow_max_level`), and falling as
              sends convert or age out. A request pays the sum of its segments' levels.

A login or reset code goes to a registered number: its number block is not judged at all, so
no record of a block can keep an owner from their own account.

Every fraud key carries one hash tag ({fraud}, services/store/keys.py), so one Lua script
decides and counts all segments of a send atomically, on standalone Redis and Cluster alike: a
send refused by one segment takes nothing in the others (the rules: fraud_judge in
services/store/lua/pieces/fraud_segments.lua; on Cluster the script fraud_judge.lua runs them
alone, on standalone Redis sms_send_reserve.lua runs them first in a send's one reservation
step, services/codes/reservation.py).
What a send took is given back (one script) when a later limit of the send refuses or the
provider fails, and a verification converts the segments of its send (one script).

The request's *tier* sets how much of the global hourly budget it may use
(`fraud.budget_share_*`): poor when its address or network is elevated; good only on credit its
own address earned (each conversion of its sends buys `credit_per_conversion` good sends);
newcomer otherwise.
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

from services.accounts.mobiles import mask_mobile
from services.captcha.pow import ProofOfWork
from services.config import FraudConfig
from services.errors import Ret, ServiceError
from services.metrics import Metrics
from services.store import keys, redis_scripts
from services.store.redis_scripts import ScriptArg, ScriptCall
from services.store.redisclient import RedisClient, decoded

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


def segments_of(mobile: str, client_ip: str, *, with_block: bool = True) -> tuple[Segment, ...]:
    """The address, the network and (with_block) the number block of one send, in that order
    (the scripts judge the first pair as the address, the second as the network)."""
    address_segment, network_segment = _sender_segments(client_ip)
    if not with_block:
        return (address_segment, network_segment)
    return (address_segment, network_segment, Segment("blk", mobile[:7]))


def _sender_segments(client_ip: str) -> tuple[Segment, Segment]:
    try:
        # An address, or the network per-client limits count it by (IPv6: its /64).
        address = ipaddress.ip_network(client_ip, strict=False).network_address
    except ValueError:
        # Not an address (a Unix socket peer, say): the whole network is one segment.
        return (Segment("ip", "unknown"), Segment("net", "unknown"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        network = ipaddress.ip_network(f"{address}/24", strict=False)
        return (Segment("ip", str(address)), Segment("net", str(network)))
    network = ipaddress.ip_network(f"{address}/48", strict=False)
    subscriber = ipaddress.ip_network(f"{address}/64", strict=False)
    return (Segment("ip", str(subscriber)), Segment("net", str(network)))


@dataclass
class SegmentVerdict:
    """The segments' verdict on one send they let through: its budget tier, and what it took
    in them (to be given back if it is not sent)."""

    segments: tuple[Segment, ...]
    tier: Tier = Tier.NEWCOMER
    # the bucket the send was counted in, in every segment; None once given back
    bucket: int | None = None

    @classmethod
    def unjudged(cls) -> SegmentVerdict:
        """The breaker is switched off: nothing taken, the whole budget."""
        return cls((), Tier.GOOD)


@dataclass(frozen=True)
class SegmentStatus:
    """One segment as the operator command shows it."""

    name: str
    state: str
    level: int
    sends: int
    conversions: int
    since_ms: int
    until_ms: int


class FraudGuard:
    """Judges sends per segment, counts conversions, shares the budget by tier."""

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
        self._judge = redis_scripts.register(redis, "fraud_judge")
        self._give_back = redis_scripts.register(redis, "fraud_give_back")
        self._convert = redis_scripts.register(redis, "fraud_convert")
        self._bucket_ms = max(1, config.window * 1000 // config.buckets)
        self._alert_until = 0.0

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def _ttl(self) -> int:
        return self._config.window + math.ceil(self._bucket_ms / 1000)

    async def judge(
        self, mobile: str, client_ip: str, altcha: object, *, judge_block: bool = True
    ) -> SegmentVerdict:
        """Take one send in each segment of (mobile, client_ip), or raise the refusal.

        `judge_block` is False for a code to a registered number (login, reset): its number
        block is then neither judged nor counted. Raises REQERR pow_required (with a
        challenge of the level the segments ask for) when no valid, unused proof of work of
        that level came with the request; REQERR segment_blocked while the address is
        blocked. With the breaker switched off, every send is let through unjudged.
        """
        segments = self.send_segments(mobile, client_ip, judge_block=judge_block)
        if not segments:
            return SegmentVerdict.unjudged()
        pow_level = await self.proof_level(altcha)
        # One script judges every segment and counts the send in all of them, or, if one
        # refuses, in none: a refused request holds no place anywhere.
        return self.verdict(segments, await self.judge_call(segments, pow_level).run())

    def send_segments(
        self, mobile: str, client_ip: str, *, judge_block: bool
    ) -> tuple[Segment, ...]:
        """The segments a send is judged in (none with the breaker switched off)."""
        if not self._config.enabled:
            return ()
        return segments_of(mobile, client_ip, with_block=judge_block)

    async def proof_level(self, altcha: object) -> int:
        """The level of the proof of work that came with a request, redeemed (0: none)."""
        if altcha is None or altcha == "":
            return 0
        return await self._pow.redeem(altcha)

    def verdict(self, segments: tuple[Segment, ...], reply: object) -> SegmentVerdict:
        """The verdict a judge_call() reply (fraud_judge in
        services/store/lua/pieces/fraud_segments.lua) stands for, or raise its refusal; a
        segment's state change is logged (once: the script reports it to one request)."""
        values = cast("list[int | str]", reply)
        outcome, wait_ms, level, tier, bucket = (int(value) for value in values[:5])
        for index, segment in enumerate(segments):
            changed, seg_level, sends, conversions = values[5 + 4 * index : 9 + 4 * index]
            if changed:
                self._state_changed(
                    segment, str(changed), int(seg_level), int(sends), int(conversions)
                )
        if outcome == 2:
            seconds = max(1, math.ceil(wait_ms / 1000))
            raise ServiceError(
                Ret.REQERR,
                f"当前网络存在异常请求，请{seconds}秒后重试",
                data={"reason": "segment_blocked"},
                retry_after=seconds,
            )
        if outcome == 1:
            self._metrics.pow_challenges.inc()
            raise ServiceError(
                Ret.REQERR,
                "请完成安全验证后重试",
                data={"reason": "pow_required", "challenge": self._pow.challenge(level)},
                retry_after=0,
            )
        return SegmentVerdict(segments, tier=Tier(tier), bucket=bucket)

    def judge_call(self, segments: tuple[Segment, ...], pow_level: int) -> ScriptCall:
        """The fraud_judge script for one send (its ARGV also serve sms_send_reserve.lua)."""
        config = self._config
        args: list[ScriptArg] = [
            self._bucket_ms,
            config.buckets,
            config.min_sends,
            config.min_conversion_percent,
            config.elevated_sends,
            config.cooldown * 1000,
            pow_level,
            self._ttl(),
            config.pow_max_level,
            config.credit_per_conversion,
            config.levels_per_send,
        ]
        return ScriptCall(self._judge, keys_of(segments), args)

    def _state_changed(
        self, segment: Segment, state: str, level: int, sends: int, conversions: int
    ) -> None:
        # Logged once: the script reports a change only to the request that made it.
        log.warning(
            "fraud segment %s is now %s%s (%d sends, %d conversions in the window)",
            segment.name,  # a number block is 7 digits of 11: no mobile is revealed
            state,
            f" at proof-of-work level {level}" if level > 1 else "",
            sends,
            conversions,
        )
        self._metrics.fraud_segment_state.labels(segment.kind, state).inc()

    async def give_back(self, verdict: SegmentVerdict) -> None:
        """Give back the send a verdict counted in its segments (it was not sent)."""
        call = self.give_back_call(verdict)
        if call is None:
            return
        if not await redis_scripts.give_back_together(self._redis, [call]):
            log.warning("could not give back a fraud segment place; it expires by itself")

    def give_back_call(self, verdict: SegmentVerdict) -> ScriptCall | None:
        """The fraud_give_back script for a verdict's send, once (None: nothing counted, or
        already given back); its ARGV also serve sms_send_give_back.lua."""
        if verdict.bucket is None:
            return None
        bucket, verdict.bucket = verdict.bucket, None
        credited = int(verdict.tier == Tier.GOOD)
        return ScriptCall(self._give_back, keys_of(verdict.segments), [bucket, credited])

    def budget_share(self, tier: Tier) -> float:
        """The part of the global budget a request of this tier may use."""
        if tier == Tier.GOOD:
            return 1.0
        if tier == Tier.NEWCOMER:
            return self._config.budget_share_newcomer
        return self._config.budget_share_poor

    def remember_send(
        self, pipe: RedisPipeline, mobile: str, verdict: SegmentVerdict, code_ttl: int
    ) -> None:
        """After a send: remember its segments' keys with the code's lifetime, so a
        verification converts them. The write is added to `pipe` (the send's other writes)."""
        if not verdict.segments:
            return
        record = json.dumps(keys_of(verdict.segments))
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
            status = await self.segment_status(name)
            if status.state != "normal" and (state is None or status.state == state):
                found.append(status)
        return sorted(found, key=lambda s: (s.state, s.name))

    async def segment_status(self, name: str) -> SegmentStatus:
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
                elif field_name.startswith("c:"):
                    conversions += int(value)
        return SegmentStatus(
            name,
            decoded(state.get("state", "normal")),
            int(state.get("level", 1 if state.get("state") else 0)),
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
