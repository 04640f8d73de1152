"""The operator console's service: who is an operator, what the console shows, what it does.

No HTTP here: handlers/console.py checks the address and the session and calls these. Every
action (a view, a lookup, an unblock, a refusal of a logged-in non-operator) is written to the
`smsreg.audit` log with who (user id and masked mobile), what, and from where.
"""

from __future__ import annotations

import datetime
import logging
import re
import zoneinfo
from dataclasses import dataclass

from services.accounts.mobiles import mask_mobile, require_mobile
from services.accounts.sessions import Session
from services.clientip import address_in, parse_networks
from services.codes.costs import UNITS
from services.codes.fraud import FraudGuard, SegmentStatus
from services.codes.receipts import ReceiptStore
from services.config import Config, operator_list
from services.errors import Ret, ServiceError
from services.ops import charts
from services.ops.history import Minute, SendHistory
from services.providers.failover import FailoverSender
from services.store import keys
from services.store.redisclient import RedisClient

audit = logging.getLogger("smsreg.audit")

SEGMENT_RE = re.compile(r"^(blk|net|ip):[0-9A-Za-z.:/]{1,64}$")
HOUR_MINUTES = 60


@dataclass(frozen=True)
class Operator:
    """A logged-in operator, as the audit log names them."""

    user_id: int
    mobile: str

    def __str__(self) -> str:
        return f"user {self.user_id} ({mask_mobile(self.mobile)})"


@dataclass(frozen=True)
class Budget:
    """This hour's budget: used and limit, in sends and in yuan (limit 0: none), seconds left."""

    sends: int
    send_limit: int
    yuan: float
    yuan_limit: float
    seconds_left: int


@dataclass(frozen=True)
class Breaker:
    provider: str
    state: str
    failures: int


@dataclass(frozen=True)
class Overview:
    """Everything the console page shows."""

    charts: list[tuple[str, str]]  # (heading, SVG)
    budget: Budget
    segments: list[SegmentStatus]
    breakers: list[Breaker]


class OpsConsole:
    """The console's views and actions over the services it watches."""

    def __init__(
        self,
        config: Config,
        redis: RedisClient,
        fraud: FraudGuard,
        sender: FailoverSender,
        receipts: ReceiptStore,
        history: SendHistory,
    ) -> None:
        self._user_ids, self._mobiles = operator_list(config.ops.operators)
        self._allow = parse_networks(config.ops.allow)
        self._limits = config.limits
        self._zone = zoneinfo.ZoneInfo(config.voice.timezone)
        self._redis = redis
        self._fraud = fraud
        self._sender = sender
        self._receipts = receipts
        self._history = history

    def allows(self, address: str) -> bool:
        """May the console be shown to this client address at all (ops.allow)?"""
        return address_in(address, self._allow)

    def operator(self, session: Session | None, address: str) -> Operator | None:
        """The session's user if they are an operator; a logged-in non-operator is audited."""
        if session is None:
            return None
        if session["user_id"] in self._user_ids or session["mobile"] in self._mobiles:
            return Operator(session["user_id"], session["mobile"])
        audit.warning(
            "console refused to user %d (%s) from %s: not an operator",
            session["user_id"],
            mask_mobile(session["mobile"]),
            address,
        )
        return None

    async def overview(self, operator: Operator, address: str) -> Overview:
        audit.info("console viewed by %s from %s", operator, address)
        minutes = await self._history.minutes()
        budget = await self._budget()
        segments = await self._fraud.segments()
        breakers = [
            Breaker(name, breaker.state, breaker.failures)
            for name, breaker in self._sender.breakers.items()
        ]
        return Overview(self._charts(minutes), budget, segments, breakers)

    async def unblock(self, operator: Operator, segment: object, address: str) -> bool:
        """Put a fraud segment back to normal (False: it had no state or counts)."""
        if not isinstance(segment, str) or not SEGMENT_RE.match(segment):
            raise ServiceError(Ret.PARAMERR, "号段格式错误", field="segment")
        done = await self._fraud.unblock(segment)
        audit.warning(
            "console: %s from %s unblocked fraud segment %s (%s)",
            operator,
            address,
            segment,
            "reset" if done else "nothing to reset",
        )
        return done

    async def lookup(
        self, operator: Operator, mobile: object, address: str
    ) -> tuple[str, list[dict[str, str]]]:
        """The masked mobile and its recent sends (newest first), each with its status."""
        canonical = require_mobile(mobile)
        sends = [
            {
                **send,
                "created_at": local_time(float(send["created_at"]), self._zone),
                "updated_at": local_time(float(send["updated_at"]), self._zone),
            }
            for send in await self._receipts.sends_of(canonical)
        ]
        audit.warning(
            "console: %s from %s looked up the sends of %s (%d found)",
            operator,
            address,
            mask_mobile(canonical),
            len(sends),
        )
        return mask_mobile(canonical), sends

    async def _budget(self) -> Budget:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.sms_global_hourly_key())
            pipe.pttl(keys.sms_global_hourly_key())
            pipe.get(keys.sms_global_spend_key())
            used, ms_left, spent = await pipe.execute()
        return Budget(
            int(used or 0),
            self._limits.sms_global_per_hour,
            int(spent or 0) / UNITS,
            self._limits.sms_global_yuan_per_hour,
            max(0, int(ms_left)) // 1000,
        )

    def _charts(self, minutes: list[Minute]) -> list[tuple[str, str]]:
        at = [m.minute for m in minutes]
        zone = self._zone

        def values(*fields: str) -> list[float | None]:
            return [float(sum(m[f] for f in fields)) for m in minutes]

        delivered = [
            m["delivered"] / (m["delivered"] + m["undelivered"])
            if m["delivered"] + m["undelivered"]
            else None
            for m in minutes
        ]
        cost = [m["cost"] / UNITS for m in minutes]
        hour_sends = _trailing([m["sent"] + m["unknown"] for m in minutes])
        hour_cost = _trailing(cost)
        sends = charts.line_chart(
            "每分钟发送（按结果）",
            at,
            [
                charts.Series("已发送", "sent", values("sent")),
                charts.Series("失败", "failed", values("provider_failed", "number_refused")),
                charts.Series("结果未知", "unknown", values("unknown")),
                charts.Series("被限制拒绝", "refused", values("refused")),
            ],
            zone=zone,
        )
        limit = self._limits.sms_global_yuan_per_hour or None
        return [
            ("每分钟发送（按结果）", sends),
            (
                "送达率（每分钟回执）",
                charts.line_chart(
                    "送达率",
                    at,
                    [charts.Series("送达率", "delivered", delivered)],
                    zone=zone,
                    top=1.0,
                    fmt=lambda v: f"{v:.0%}",
                ),
            ),
            (
                "每分钟费用（元）",
                charts.line_chart(
                    "每分钟费用", at, [charts.Series("费用", "cost", cost)], zone=zone
                ),
            ),
            (
                "近一小时发送量与预算（条）",
                charts.line_chart(
                    "近一小时发送量",
                    at,
                    [charts.Series("近一小时发送", "sent", hour_sends)],
                    zone=zone,
                    limit=float(self._limits.sms_global_per_hour),
                ),
            ),
            (
                "近一小时费用与预算（元）",
                charts.line_chart(
                    "近一小时费用",
                    at,
                    [charts.Series("近一小时费用", "cost", hour_cost)],
                    zone=zone,
                    limit=limit,
                ),
            ),
            (
                "每分钟过载拒绝（503）",
                charts.line_chart(
                    "每分钟过载拒绝",
                    at,
                    [charts.Series("过载拒绝", "shed", values("shed"))],
                    zone=zone,
                ),
            ),
        ]


def _trailing(values: list[float]) -> list[float | None]:
    """The sum over the trailing hour at each minute (what a rolling budget would hold)."""
    out: list[float | None] = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= HOUR_MINUTES:
            total -= values[i - HOUR_MINUTES]
        out.append(total)
    return out


def local_time(seconds: float, zone: datetime.tzinfo) -> str:
    """Unix seconds as local 'YYYY-MM-DD HH:MM:SS'."""
    return datetime.datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%d %H:%M:%S")
