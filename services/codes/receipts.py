"""Delivery receipts: one record per send, updated by the providers' status pushes.

A send gets an opaque `send_id` (128 random bits) and a Redis hash with the provider, its
message id, the channel, the status (sent → delivered | failed, with the provider's reason)
and timestamps, for as long as the code lives. An index from the provider's message id to
the send id lets a push find its send. Pushes are parsed here (no HTTP objects), applied
idempotently in one Lua step, and counted.

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
from collections.abc import Mapping
from dataclasses import dataclass
from xml.parsers import expat

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from services.clientip import address_in, parse_networks
from services.errors import Ret, ServiceError
from services.metrics import Metrics
from services.providers.base import Delivery
from services.store import keys, redis_scripts
from services.store.redisclient import RedisClient, decoded
from services.validation import MalformedJson, parse_json

# A pipeline of either client (standalone or cluster): writes queued, sent with execute().
RedisPipeline = Pipeline | ClusterPipeline

log = logging.getLogger(__name__)

SEND_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9^_.:-]{1,64}$")
MAX_REPORTS = 1000
# <Request><field>text</field></Request> is 2 deep; anything much deeper is not a receipt.
MAX_XML_DEPTH = 8


class MalformedReceipt(ValueError):
    """A push that is not in the provider's format: answered 400, nothing changes."""


@dataclass(frozen=True)
class Receipt:
    """One status report: which provider message, delivered or not, and the provider's code.

    `frees_mobile`: the user certainly got nothing, so the resend guard may be lifted (once
    per code lifetime, ReceiptStore.apply): a failed SMS, a call that could not be placed;
    not a call that rang unanswered.
    """

    provider: str
    message_id: str
    delivered: bool
    reason: str
    frees_mobile: bool


def _message_id(value: object) -> str:
    if not isinstance(value, str) or not MESSAGE_ID_RE.match(value):
        raise MalformedReceipt("message id missing or malformed")
    return value


def _json(body: bytes, what: str) -> object:
    try:
        return parse_json(body)
    except MalformedJson:  # deep nesting and lone surrogates included
        raise MalformedReceipt(what) from None


def _refuse_dtd(*_: object) -> None:
    raise MalformedReceipt("a DTD is not allowed")


def _xml_fields(body: bytes) -> dict[str, str]:
    """The text of each child of the <Request> root.

    Read with expat as it streams (no tree, no recursion), refusing what no provider sends: a
    DTD, and so any entity declaration (billion laughs, external entities), before it is
    read; and nesting deeper than MAX_XML_DEPTH.
    """
    fields: dict[str, str] = {}
    depth = 0
    text: list[str] = []

    def start(tag: str, _attributes: object) -> None:
        nonlocal depth
        if depth == 0 and tag != "Request":
            raise MalformedReceipt("root element must be Request")
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise MalformedReceipt("XML nested too deeply")
        if depth == 2:
            text.clear()

    def end(tag: str) -> None:
        nonlocal depth
        if depth == 2:
            fields[tag] = "".join(text).strip()
        depth -= 1

    def characters(data: str) -> None:
        if depth == 2:
            text.append(data)

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd  # unreachable without a DTD: belt and braces
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(body, True)
    except MalformedReceipt:
        raise
    except (expat.ExpatError, LookupError, ValueError):
        # ValueError, LookupError: an encoding declared that Python lacks or expat cannot use.
        raise MalformedReceipt("body is not XML") from None
    return fields


def parse_ronglian_sms(body: bytes) -> list[Receipt]:
    """Ronglian's SMS status report push (action SMSArrived), JSON or XML.

    `content` carries the smsMessageSid of the TemplateSMS answer, `status` 0 = delivered,
    1 = failed, `deliverCode` the carrier's code (DELIVRD, UNDELIV, …).
    """
    text = body.strip()
    fields: Mapping[str, object]
    if text.startswith(b"<"):
        fields = _xml_fields(text)
    else:
        document = _json(text, "body is neither JSON nor XML")
        request = document.get("Request") if isinstance(document, dict) else None
        if not isinstance(request, dict):
            raise MalformedReceipt('expected {"Request": {...}}')
        fields = request
    if fields.get("action") != "SMSArrived":
        raise MalformedReceipt("action must be SMSArrived")
    status = fields.get("status")
    if status not in ("0", "1"):
        raise MalformedReceipt("status must be 0 or 1")
    reason = fields.get("deliverCode") or ""
    if not isinstance(reason, str) or len(reason) > 32:
        raise MalformedReceipt("deliverCode malformed")
    delivered = status == "0"
    return [
        Receipt("ronglian", _message_id(fields.get("content")), delivered, reason, not delivered)
    ]


VOICE_STATES = {"0": "answered", "1": "not_answered", "2": "call_failed"}
# Only a call that could not be placed frees the mobile: an unanswered one reached the phone,
# and refusing calls is free for whoever holds it (call bombing otherwise).
VOICE_STATES_FREEING = {"2"}


def parse_ronglian_voice(body: bytes) -> list[Receipt]:
    """The VoiceVerify call result pushed to respUrl: XML, action VoiceCode, state 0/1/2."""
    fields = _xml_fields(body.strip())
    if fields.get("action") != "VoiceCode":
        raise MalformedReceipt("action must be VoiceCode")
    state = fields.get("state")
    if state not in VOICE_STATES:
        raise MalformedReceipt("state must be 0, 1 or 2")
    call_sid = _message_id(fields.get("callSid"))
    frees = state in VOICE_STATES_FREEING
    return [Receipt("ronglian", call_sid, state == "0", VOICE_STATES[state], frees)]


def parse_aliyun_sms(body: bytes) -> list[Receipt]:
    """Aliyun's SmsReport HTTP push: a JSON array of reports (biz_id, success, err_code)."""
    reports = _json(body, "body is not JSON")
    if not isinstance(reports, list) or not 0 < len(reports) <= MAX_REPORTS:
        raise MalformedReceipt(f"expected a JSON array of 1 to {MAX_REPORTS} reports")
    receipts = []
    for report in reports:
        if not isinstance(report, dict) or not isinstance(report.get("success"), bool):
            raise MalformedReceipt("each report needs biz_id and a boolean success")
        reason = report.get("err_code", "")
        if not isinstance(reason, str) or len(reason) > 32:
            raise MalformedReceipt("err_code malformed")
        delivered = report["success"]
        message_id = _message_id(report.get("biz_id"))
        receipts.append(Receipt("aliyun", message_id, delivered, reason, not delivered))
    return receipts


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
        allowed_sources: str = "",
    ) -> None:
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
