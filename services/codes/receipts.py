"""Delivery receipts: one record per send, updated by the providers' status pushes.

A send gets an opaque `send_id` (128 random bits) and a Redis hash with the provider, its
message id, the channel, the status (sent → delivered | failed, with the provider's reason)
and timestamps, for as long as the code lives. An index from the provider's message id to
the send id lets a push find its send. Each provider parses its pushes in its
own module (services/providers/: no HTTP objects); here they are applied idempotently in one
Lua step, and counted.

A receipt saying the user got nothing (a failed SMS, a call that could not be placed) frees
the mobile for another send at once, so that the page can offer the voice call without the
60 s wait: once per code lifetime per mobile, never again until then (else failed receipts
would let one number be sent or called back to back), and never for a call that rang
unanswered (the phone was reached; it is the attacker's cheapest way to fail a call).
"""

from __future__ import annotations

import datetime
import hmac
import logging
import re
import time

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from services.clientip import address_in, parse_networks
from services.codes.costs import SmsPricing, call_minutes, to_units
from services.errors import Ret, ServiceError
from services.metrics import Metrics
from services.ops.history import SendHistory
from services.providers.base import Delivery
from services.providers.pushes import Receipt
from services.store import keys, redis_scripts
from services.store.redisclient import RedisClient, decoded

# A pipeline of either client (standalone or cluster): writes queued, sent with execute().
RedisPipeline = Pipeline | ClusterPipeline

log = logging.getLogger(__name__)

RECENT_SENDS = 10  # send ids kept per mobile for the console's lookup
SEND_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class ReceiptStore:
    """Send records in Redis; the receipts that update them; the status for the page."""

    def __init__(
        self,
        redis: RedisClient,
        ttl: int,
        metrics: Metrics,
        callback_token: str,
        allowed_sources: str,
        *,
        pricing: SmsPricing,
        history: SendHistory,
    ) -> None:
        self._pricing = pricing
        self._history = history
        self._redis = redis
        self._ttl = ttl
        self._metrics = metrics
        self._apply = redis_scripts.register(redis, "receipt_apply")
        self._release_guard = redis_scripts.register(redis, "receipt_release_guard")
        self._token = callback_token.encode()
        self._sources = parse_networks(allowed_sources)

    def authorized(self, token: str, source_ip: str) -> bool:
        """The path's token matches (compared in constant time) and the source is allowed."""
        if not hmac.compare_digest(token.encode(), self._token):
            return False
        return not self._sources or address_in(source_ip, self._sources)

    def record_send(
        self,
        pipe: RedisPipeline,
        send_id: str,
        delivery: Delivery,
        mobile: str = "",
        guard_token: str = "",
    ) -> None:
        """Remember an accepted send: its writes are added to `pipe`, which the caller runs
        with the send's other writes (one round trip). The code is out already: a failure
        there is only logged.

        The mobile and the resend guard's token are kept (never shown) so that a failed
        receipt can lift the guard this send set.
        """
        now = f"{time.time():.3f}"
        record = keys.send_record_key(send_id)
        pipe.hset(
            record,
            mapping={
                "provider": delivery.provider,
                "message_id": delivery.message_id,
                "channel": delivery.channel.value,
                "status": "sent",
                "reason": "",
                "created_at": now,
                "updated_at": now,
                "mobile": mobile,
                "guard_token": guard_token,
            },
        )
        pipe.expire(record, self._ttl)
        index = keys.provider_message_key(delivery.provider, delivery.message_id)
        pipe.set(index, send_id, ex=self._ttl)
        if mobile:  # the console's lookup by number: the last few sends, as long as they live
            sends = keys.sms_sends_of_key(mobile)
            pipe.lpush(sends, send_id)
            pipe.ltrim(sends, 0, RECENT_SENDS - 1)
            pipe.expire(sends, self._ttl)

    async def apply(self, receipts: list[Receipt], channel_hint: str = "sms") -> None:
        """Apply each receipt once; unknown or repeated ones change nothing (and are counted)."""
        for receipt in receipts:
            index = keys.provider_message_key(receipt.provider, receipt.message_id)
            reply = await self._redis.get(index)
            send_id = decoded(reply) if reply else ""
            outcome = [0]
            if send_id:
                outcome = await self._apply(
                    keys=[keys.send_record_key(send_id)],
                    args=[
                        receipt.provider,
                        receipt.message_id,
                        "delivered" if receipt.delivered else "failed",
                        receipt.reason,
                        f"{time.time():.3f}",
                    ],
                )
            if outcome[0] == 2:
                created_at, channel = float(outcome[1]), str(outcome[2])
                status = "delivered" if receipt.delivered else "failed"
                mobile, guard_token = str(outcome[3]), str(outcome[4])
                if receipt.frees_mobile and mobile and guard_token:
                    await self._free_mobile(mobile, guard_token, send_id)
                self._metrics.receipts.labels(receipt.provider, channel, status).inc()
                self._history.add("delivered" if receipt.delivered else "undelivered")
                if channel == "voice":
                    self._bill_call(receipt)
                self._metrics.delivery_seconds.labels(receipt.provider, channel).observe(
                    max(0.0, time.time() - created_at)
                )
                log.info(
                    "receipt %s %s for send %s… (%s)",
                    receipt.provider,
                    status,
                    send_id[:6],
                    receipt.reason or "-",
                )
            else:
                kind = "duplicate" if outcome[0] == 1 else "unmatched"
                self._metrics.receipts.labels(receipt.provider, channel_hint, kind).inc()

    def _bill_call(self, receipt: Receipt) -> None:
        """A call was priced at one minute when it was placed: add its further minutes."""
        extra = call_minutes(receipt.duration) - 1
        if extra > 0:
            cost = extra * self._pricing.per_minute(receipt.provider)
            self._metrics.sms_cost.labels(receipt.provider, "voice").inc(cost)
            self._history.add("cost", to_units(cost))

    async def _free_mobile(self, mobile: str, guard_token: str, send_id: str) -> None:
        """Lift the send's resend guard, unless a receipt has freed this mobile within the
        code lifetime already: one atomic step in the mobile's slot, so concurrent receipts
        and other processes cannot free it twice."""
        lifted = await self._release_guard(
            keys=[keys.sms_guard_key(mobile), keys.sms_freed_key(mobile)],
            args=[guard_token, self._ttl],
        )
        if lifted == 2:
            log.info("send %s… failed; its mobile was freed early already: guard kept", send_id[:6])

    async def sends_of(self, mobile: str) -> list[dict[str, str]]:
        """The mobile's recent sends still on record, newest first: provider, channel,
        status, reason, created_at and updated_at (Unix seconds), and the send id's first
        characters (for the operator console; never the code)."""
        send_ids = [
            decoded(s) for s in await self._redis.lrange(keys.sms_sends_of_key(mobile), 0, -1)
        ]
        if not send_ids:
            return []
        names = ["provider", "channel", "status", "reason", "created_at", "updated_at"]
        async with self._redis.pipeline(transaction=False) as pipe:
            for send_id in send_ids:
                pipe.hmget(keys.send_record_key(send_id), names)
            records = await pipe.execute()
        return [
            {
                "send": f"{send_id[:6]}…",
                **{n: decoded(v) for n, v in zip(names, record, strict=True)},
            }
            for send_id, record in zip(send_ids, records, strict=True)
            if record[0] is not None
        ]

    async def send_status(self, send_id: object) -> dict[str, str]:
        """{status, channel, updated_at} of one send (no mobile, no code), or a refusal."""
        if not isinstance(send_id, str) or not SEND_ID_RE.match(send_id):
            raise ServiceError(Ret.PARAMERR, "发送编号格式错误")
        status, channel, updated_at = await self._redis.hmget(
            keys.send_record_key(send_id), ["status", "channel", "updated_at"]
        )
        if status is None or channel is None or updated_at is None:
            raise ServiceError(Ret.NODATA, "发送记录不存在或已过期")
        return {
            "status": decoded(status),
            "channel": decoded(channel),
            "updated_at": _iso(float(updated_at)),
        }
