"""SMS-pumping defence: conversion tracking and a breaker per segment, budget shedding.

Every send is recorded in three *segments*: the mobile's number block (first 7 digits, 号段),
the client's network (IPv4 /24, IPv6 /48) and the client address (IPv6: its /64, which one
subscriber gets). A code that is verified counts as a *conversion* of the segments of the send
that delivered it. Each segment keeps rolling counts of sends and conversions over
`fraud.window` seconds in `fraud.buckets` buckets (one Redis hash per segment, old buckets pruned,
a TTL on every key), and a breaker:

    normal ──(sends >= min_sends and conversion < min_conversion)──> elevated
    elevated: every request touching it needs a solved proof of work (services/pow.py), and
              at most `elevated_sends` sends per probation round; a round that ends with
              conversion still below min_conversion ──> blocked for `cooldown` seconds
    blocked ──(cool-down over)──> elevated (a new probation round)
    elevated ──(conversion back above the threshold, or the window rolled on)──> normal

A segment's breaker and counts live under one hash tag ({blk:1381234}), so one Lua script
decides and counts atomically. A send touches three segments in three slots: on standalone
Redis one script takes all three (the keys are on one server); on Redis Cluster each segment is
taken by its own atomic script, in a fixed order, and the places already taken are given back
when a later segment (or a later limit of the send) refuses. A cap can therefore never be
overshot; at worst a concurrent request is refused for a place that is given back a moment
later.

The request's *tier* (good record / unknown newcomer / poor record) sets how much of the global
hourly budget it may use (`fraud.budget_share_*`): as spend approaches the budget the worst
segments and then newcomers are refused first, segments with a good record keep being served.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services import keys
from services.config import FraudConfig
from services.errors import Ret, ServiceError
from services.metrics import Metrics
from services.pow import ProofOfWork
from services.redisclient import RedisClient, decoded
from services.validation import mask_mobile

if TYPE_CHECKING:
    from services.receipts import RedisPipeline

log = logging.getLogger(__name__)


class Tier(enum.IntEnum):
    """How much of the global budget a request may use (the worse the record, the less)."""

    GOOD = 0
    NEWCOMER = 1
    POOR = 2


STATES = ("normal", "elevated", "blocked")

# Shared by the admit and the conversion scripts: the rolling sums of one segment's counts
# hash (fields s:<bucket> and c:<bucket>), pruning buckets that left the window.
_SUM_LUA = """
local function window_sums(counts_key, current, buckets)
    local sends, conversions = 0, 0
    local fields = redis.call('HGETALL', counts_key)
    for i = 1, #fields, 2 do
        local bucket = tonumber(string.sub(fields[i], 3))
        if bucket and bucket > current - buckets then
            if string.sub(fields[i], 1, 1) == 's' then
                sends = sends + tonumber(fields[i + 1])
            else
                conversions = conversions + tonumber(fields[i + 1])
            end
        else
            redis.call('HDEL', counts_key, fields[i])
        end
    end
    return sends, conversions
end
local now_parts = redis.call('TIME')
local now_ms = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
"""

# Admit one send in n segments (KEYS: counts, state per segment, in pairs), atomically.
# ARGV: bucket ms, buckets per window, min sends, min conversion %, elevated sends per round,
# cool-down ms, proof of work given (0/1), key ttl s, count the send (0: only evaluate).
# Evaluates every segment's breaker first (state changes are stored even when the send is
# refused), then refuses or counts the send in all of them.
# Returns {outcome, ms, any segment poor, any segment good, bucket, changes...}: outcome
# 0 admitted, 1 proof of work required, 2 blocked (ms = cool-down left); changes = index, new
# state, sends, conversions per change.
ADMIT_SCRIPT = (
    _SUM_LUA
    + """
local bucket_ms, buckets = tonumber(ARGV[1]), tonumber(ARGV[2])
local min_sends, min_rate = tonumber(ARGV[3]), tonumber(ARGV[4])
local round_sends, cooldown_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local pow_given, ttl, count = ARGV[7] == '1', tonumber(ARGV[8]), ARGV[9] == '1'
local current = math.floor(now_ms / bucket_ms)
local outcome, wait_ms, any_poor, any_good = 0, 0, 0, 0
local changes = {}
local elevated = {}
local function poor(sends, conversions)
    return sends >= min_sends and conversions * 100 < min_rate * sends
end
for i = 1, #KEYS, 2 do
    local counts, state_key = KEYS[i], KEYS[i + 1]
    local sends, conversions = window_sums(counts, current, buckets)
    local st = redis.call('HMGET', state_key, 'state', 'until', 'rsends', 'rconv')
    local state, old = st[1] or 'normal', st[1] or 'normal'
    local rsends, rconv = tonumber(st[3] or '0'), tonumber(st[4] or '0')
    if state == 'blocked' and now_ms >= tonumber(st[2] or '0') then
        state, rsends, rconv = 'elevated', 0, 0
    end
    if state == 'elevated' and not poor(sends, conversions) then state = 'normal' end
    if state == 'normal' and poor(sends, conversions) then
        state, rsends, rconv = 'elevated', 0, 0
    end
    if state == 'elevated' and rsends >= round_sends then
        if rconv * 100 < min_rate * rsends then
            state = 'blocked'
            redis.call('HSET', state_key, 'until', now_ms + cooldown_ms)
        else
            rsends, rconv = 0, 0  -- the round converted: another round under proof of work
        end
    end
    if state ~= old or state == 'elevated' then
        if state == 'normal' then
            redis.call('DEL', state_key)
        else
            redis.call('HSET', state_key, 'state', state, 'rsends', rsends, 'rconv', rconv)
            if state ~= old then redis.call('HSET', state_key, 'since', now_ms) end
            redis.call('PEXPIRE', state_key, ttl * 1000 + cooldown_ms)
        end
    end
    if state ~= old then
        table.insert(changes, (i + 1) / 2)
        table.insert(changes, state)
        table.insert(changes, sends)
        table.insert(changes, conversions)
    end
    if state == 'blocked' then
        local left = tonumber(redis.call('HGET', state_key, 'until')) - now_ms
        if left > wait_ms then wait_ms = left end
        outcome = 2
    elseif state == 'elevated' and not pow_given and outcome == 0 then
        outcome = 1
    end
    elevated[i] = state == 'elevated'
    -- Poor: the breaker is open. (Not judged earlier: codes are verified a minute or so
    -- after their send, so a young, unconverted count says nothing yet.)
    if state ~= 'normal' then
        any_poor = 1
    elseif conversions > 0 and conversions * 100 >= min_rate * sends then
        any_good = 1
    end
end
if outcome == 0 and count then
    for i = 1, #KEYS, 2 do
        redis.call('HINCRBY', KEYS[i], 's:' .. current, 1)
        redis.call('EXPIRE', KEYS[i], ttl)
        if elevated[i] then redis.call('HINCRBY', KEYS[i + 1], 'rsends', 1) end
    end
end
local reply = {outcome, wait_ms, any_poor, any_good, current}
for _, value in ipairs(changes) do table.insert(reply, value) end
return reply
"""
)

# Give back a send that did not happen (another limit refused, the provider failed).
# KEYS: counts, state per segment. ARGV: the bucket the send was counted in, was elevated (0/1)
# per segment. Never creates a key.
RELEASE_SCRIPT = """
for i = 1, #KEYS, 2 do
    local field = 's:' .. ARGV[1]
    if tonumber(redis.call('HGET', KEYS[i], field) or '0') > 0 then
        redis.call('HINCRBY', KEYS[i], field, -1)
    end
    if redis.call('HEXISTS', KEYS[i + 1], 'rsends') == 1
        and tonumber(redis.call('HGET', KEYS[i + 1], 'rsends')) > 0 then
        redis.call('HINCRBY', KEYS[i + 1], 'rsends', -1)
    end
end
return 0
"""

# Count a conversion in the current bucket of each segment (KEYS: counts, state per segment;
# ARGV: bucket ms, key ttl s), and in the probation round of an elevated one.
CONVERT_SCRIPT = (
    _SUM_LUA
    + """
local current = math.floor(now_ms / tonumber(ARGV[1]))
for i = 1, #KEYS, 2 do
    redis.call('HINCRBY', KEYS[i], 'c:' .. current, 1)
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2]))
    if redis.call('HGET', KEYS[i + 1], 'state') == 'elevated' then
        redis.call('HINCRBY', KEYS[i + 1], 'rconv', 1)
    end
end
return 0
"""
)


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
    # (segments of one admit script, the bucket it counted the send in), to give back
    taken: list[tuple[tuple[Segment, ...], int]] = field(default_factory=list)

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
        one_script: bool,
        pow_service: ProofOfWork,
        metrics: Metrics,
    ) -> None:
        self._redis = redis
        self._config = config
        self._one_script = one_script  # standalone Redis: all segments in one script
        self._pow = pow_service
        self._metrics = metrics
        self._admit = redis.register_script(ADMIT_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._convert = redis.register_script(CONVERT_SCRIPT)
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
        admission = Admission(segments)
        # Standalone: one script for all segments. Cluster: one per segment (one slot each),
        # every segment evaluated even after a refusal, so breakers move as on standalone.
        groups = [segments] if self._one_script else [(segment,) for segment in segments]
        outcome, wait_ms = 0, 0
        try:
            for group in groups:
                # After a refusal the remaining segments are only evaluated, not counted: a
                # refused request must not use up places (and trip breakers) elsewhere.
                group_outcome, group_wait_ms = await self._admit_group(
                    admission, group, pow_given, count=outcome == 0
                )
                outcome, wait_ms = max(outcome, group_outcome), max(wait_ms, group_wait_ms)
        except BaseException:
            await asyncio.shield(self.release(admission))
            raise
        if outcome:
            await self.release(admission)
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
        return admission

    async def _admit_group(
        self, admission: Admission, segments: tuple[Segment, ...], pow_given: bool, count: bool
    ) -> tuple[int, int]:
        """Run the admit script on some segments; (outcome, ms to wait). Records what it took."""
        config = self._config
        reply = await self._admit(
            keys=[key for segment in segments for key in segment.redis_keys],
            args=[
                self._bucket_ms,
                config.buckets,
                config.min_sends,
                config.min_conversion_percent,
                config.elevated_sends,
                config.cooldown * 1000,
                int(pow_given),
                self._ttl(),
                int(count),
            ],
        )
        outcome, wait_ms, any_poor, any_good, bucket = (int(value) for value in reply[:5])
        changes = reply[5:]
        for i in range(0, len(changes), 4):
            index, state, sends, conversions = changes[i : i + 4]
            self._state_changed(segments[int(index) - 1], state, int(sends), int(conversions))
        admission.any_poor |= bool(any_poor)
        admission.any_good |= bool(any_good)
        if outcome == 0 and count:
            admission.taken.append((segments, bucket))
        return outcome, wait_ms

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
        """Give back the places an admitted send took (it was not sent)."""
        if admission is None or not admission.taken:
            return
        taken, admission.taken = admission.taken, []
        for group, bucket in taken:
            try:
                await self._release(
                    keys=[key for segment in group for key in segment.redis_keys], args=[bucket]
                )
            except Exception:
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
        """After a send: remember its segments with the code, so a verification converts
        them. The write is added to `pipe` (run with the send's other writes)."""
        record = json.dumps([segment.name for segment in admission.segments])
        pipe.set(keys.sms_segments_key(mobile), record, ex=code_ttl)

    async def converted(self, mobile: str) -> None:
        """A code sent to mobile was verified: count a conversion in the segments of its send."""
        if not self._config.enabled:
            return
        record = await self._redis.getdel(keys.sms_segments_key(mobile))
        if not record:
            return
        names = json.loads(record)
        segments = [Segment(*name.split(":", 1)) for name in names]
        groups = [segments] if self._one_script else [[segment] for segment in segments]
        for group in groups:
            await self._convert(
                keys=[key for segment in group for key in segment.redis_keys],
                args=[self._bucket_ms, self._ttl()],
            )
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
