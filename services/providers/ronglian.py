"""Ronglian (容联云通讯) as a provider: the async REST client (TemplateSMS for SMS, VoiceVerify
for voice codes, REST 2013-12-26, signed), the provider over it, and the status reports
Ronglian pushes back (parse_ronglian_sms, parse_ronglian_voice)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from services.accounts.mobiles import mask_mobile
from services.config import RonglianConfig
from services.metrics import Metrics
from services.providers.base import (
    Channel,
    CodeMessage,
    Outcome,
    ProviderError,
    classify_http_status,
    classify_transport_error,
)
from services.providers.pushes import (
    MalformedReceipt,
    Receipt,
    json_document,
    valid_message_id,
    xml_fields,
)
from services.validation import parse_json

log = logging.getLogger(__name__)

# Ronglian's servers are in China and check the timestamp against China time (UTC+8, no DST).
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")
SUCCESS = "000000"
# Ronglian's JSON answer as parsed: its fields are read with checks (_answer_text).
Answer = dict[str, Any]

# Codes an operator must act on (credentials, account, app, template): logged at error level.
CONFIG_ERRORS = {
    "111109": "sig check failed: wrong auth_token",
    "111141": "account does not exist: wrong account_sid",
    "111142": "account balance exhausted",
    "111181": "appId does not exist: wrong app_id",
    "111182": "appId does not belong to this account",
    "112310": "app not launched: only whitelisted test numbers may receive SMS",
    "112311": "template does not exist: wrong template_id",
    "160043": "template does not belong to the app",
    "111106": "timestamp out of window: check the server clock",
}
# Codes caused by the recipient or the provider's own limits: logged as warnings.
SEND_REFUSALS = {
    "160038": "provider: same number too often (30 s rule)",
    "160039": "provider: daily cap per number reached",
    "160040": "provider: daily cap for verification template reached",
    "160042": "provider: number format rejected",
    "111111": "provider: too many concurrent requests",
}
# Answers about this number (format, per-number throttles and caps): every provider would
# refuse the same, so they never fail over. Every other statusCode is a definite non-send
# for a reason on Ronglian's side (account, app, template, signature, system).
NUMBER_REFUSALS = {"160038", "160039", "160040", "160041", "160042", "160045", "160048"}


class RonglianError(ProviderError):
    """A send that did not succeed; the client sees THIRDERR."""

    def __init__(self, status: str, outcome: Outcome) -> None:
        # status: Ronglian's statusCode, or refused / timeout / http_<code> / bad_body.
        super().__init__("ronglian", status, outcome)


def sign(account_sid: str, auth_token: str, timestamp: str) -> tuple[str, str]:
    """Return (sig, Authorization) for a request made at timestamp (yyyyMMddHHmmss)."""
    sig = hashlib.md5(f"{account_sid}{auth_token}{timestamp}".encode()).hexdigest().upper()
    authorization = base64.b64encode(f"{account_sid}:{timestamp}".encode()).decode()
    return sig, authorization


def china_timestamp(now: datetime.datetime | None = None) -> str:
    return (
        (now or datetime.datetime.now(CHINA_TIME)).astimezone(CHINA_TIME).strftime("%Y%m%d%H%M%S")
    )


def _answer_text(answer: Answer, section: str, name: str) -> str:
    """answer[section][name] if it is text, else "" (the id is for logs and receipts only)."""
    part = answer.get(section)
    value = part.get(name) if isinstance(part, dict) else None
    return value if isinstance(value, str) else ""


class RonglianClient:
    """Sends template SMS through one AsyncHTTPClient that lives as long as the server."""

    def __init__(self, http: AsyncHTTPClient, config: RonglianConfig, metrics: Metrics) -> None:
        self._http = http
        self._config = config
        self._metrics = metrics
        self._account_url = (
            f"{config.base_url.rstrip('/')}/2013-12-26/Accounts/{config.account_sid}"
        )

    async def send_template_sms(self, to: str, datas: list[str], template_id: str) -> str:
        """Send one SMS and return its smsMessageSid; raise RonglianError on any failure."""
        payload = {
            "to": to,
            "appId": self._config.app_id,
            "templateId": template_id,
            "datas": datas,
        }
        return await self._call("/SMS/TemplateSMS", payload, to, ("templateSMS", "smsMessageSid"))

    async def voice_verify(
        self,
        to: str,
        verify_code: str,
        play_times: int,
        resp_url: str,
        display_num: str = "",
        lang: str = "zh",
        user_data: str = "",
    ) -> str:
        """Place a voice-verification call that reads verify_code out; return its callSid."""
        payload = {
            "appId": self._config.app_id,
            "verifyCode": verify_code,
            "playTimes": str(play_times),
            "to": to,
            "displayNum": display_num,
            "respUrl": resp_url,
            "lang": lang,
            "userData": user_data,
        }
        return await self._call("/Calls/VoiceVerify", payload, to, ("VoiceVerify", "callSid"))

    async def _call(
        self, path: str, payload: Mapping[str, object], to: str, sid_at: tuple[str, str]
    ) -> str:
        """POST one signed request; return the answer's id at sid_at, or raise RonglianError."""
        started = time.monotonic()
        try:
            answer = await self._post(path, payload, mask_mobile(to))
        except RonglianError as exc:
            self._metrics.sms_sends.labels(exc.status).inc()
            raise
        finally:
            self._metrics.provider_seconds.observe(time.monotonic() - started)
        self._metrics.sms_sends.labels(SUCCESS).inc()
        sid = _answer_text(answer, *sid_at)
        # DEBUG: the access line already records every send (errno 0), at a cost per request.
        log.debug("%s to %s sid=%s", path, mask_mobile(to), sid)
        return sid

    async def _post(self, path: str, payload: Mapping[str, object], who: str) -> Answer:
        timestamp = china_timestamp()
        sig, authorization = sign(self._config.account_sid, self._config.auth_token, timestamp)
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = HTTPRequest(
            f"{self._account_url}{path}?sig={sig}",
            method="POST",
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json;charset=utf-8",
                "Authorization": authorization,
            },
            body=body,  # a bytes body goes out with Content-Length, never chunked (112609)
            connect_timeout=self._config.connect_timeout,
            request_timeout=self._config.request_timeout,
        )
        try:
            response = await self._http.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            status, outcome = classify_transport_error(exc)
            log.warning("ronglian unreachable sending to %s: %s (%s)", who, exc, outcome.value)
            raise RonglianError(status, outcome) from None
        if response.code != 200:
            reason = response.error or f"HTTP {response.code}"
            log.warning("ronglian failed sending to %s: %s", who, reason)
            raise RonglianError(f"http_{response.code}", classify_http_status(response.code))
        return self._parse(response.body, who)

    def _parse(self, body: bytes, who: str) -> Answer:
        try:
            answer = cast(Answer, parse_json(body))  # not an object: TypeError
            status = answer["statusCode"]
        except (ValueError, TypeError, KeyError):
            log.warning("ronglian answered a non-protocol body sending to %s: %.80r", who, body)
            # Not Ronglian's answer (a proxy's page?): whether it sent is unknown.
            raise RonglianError("bad_body", Outcome.UNKNOWN) from None
        if status == SUCCESS:
            return answer
        message = answer.get("statusMsg", "")
        if status in CONFIG_ERRORS:
            log.error(
                "ronglian %s %s (%s) sending to %s", status, CONFIG_ERRORS[status], message, who
            )
        else:
            meaning = SEND_REFUSALS.get(status, "refused")
            log.warning("ronglian %s %s (%s) sending to %s", status, meaning, message, who)
        outcome = Outcome.NUMBER_REFUSED if status in NUMBER_REFUSALS else Outcome.PROVIDER_FAILED
        raise RonglianError(status, outcome)


@dataclass(frozen=True)
class VoiceSettings:
    """How calls are placed: plays, caller id, language, where the call result is pushed."""

    play_times: int
    display_num: str
    lang: str
    resp_url: str


class RonglianProvider:
    """SMS with the configured template ({1} = code, {2} = minutes, and with sms.webotp_domain
    set {3} = that domain); voice calls read the code."""

    name = "ronglian"
    channels = frozenset({Channel.SMS, Channel.VOICE})

    def __init__(
        self,
        client: RonglianClient,
        template_id: str,
        voice: VoiceSettings,
        webotp_domain: str = "",
    ) -> None:
        self._client = client
        self._template_id = template_id
        self._voice = voice
        self._webotp_domain = webotp_domain

    async def send(self, message: CodeMessage) -> str:
        if message.channel is Channel.VOICE:
            voice = self._voice
            return await self._client.voice_verify(
                message.mobile,
                message.code,
                voice.play_times,
                voice.resp_url,
                voice.display_num,
                voice.lang,
                user_data=message.reference,
            )
        datas = [message.code, str(message.ttl_minutes)]
        if self._webotp_domain:
            # For a template whose last line is "@{3} #{1}" (WebOTP): a browser on that
            # origin may offer the code to the page (navigator.credentials.get({otp})).
            datas.append(self._webotp_domain)
        return await self._client.send_template_sms(message.mobile, datas, self._template_id)


def parse_ronglian_sms(body: bytes) -> list[Receipt]:
    """Ronglian's SMS status report push (action SMSArrived), JSON or XML.

    `content` carries the smsMessageSid of the TemplateSMS answer, `status` 0 = delivered,
    1 = failed, `deliverCode` the carrier's code (DELIVRD, UNDELIV, …).
    """
    text = body.strip()
    fields: Mapping[str, object]
    if text.startswith(b"<"):
        fields = xml_fields(text)
    else:
        document = json_document(text, "body is neither JSON nor XML")
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
    sid = valid_message_id(fields.get("content"))
    return [Receipt("ronglian", sid, delivered, reason, not delivered)]


VOICE_STATES = {"0": "answered", "1": "not_answered", "2": "call_failed"}
# Only a call that could not be placed frees the mobile: an unanswered one reached the phone,
# and refusing calls is free for whoever holds it (call bombing otherwise).
VOICE_STATES_FREEING = {"2"}


def parse_ronglian_voice(body: bytes) -> list[Receipt]:
    """The VoiceVerify call result pushed to respUrl: XML, action VoiceCode, state 0/1/2."""
    fields = xml_fields(body.strip())
    if fields.get("action") != "VoiceCode":
        raise MalformedReceipt("action must be VoiceCode")
    state = fields.get("state")
    if state not in VOICE_STATES:
        raise MalformedReceipt("state must be 0, 1 or 2")
    call_sid = valid_message_id(fields.get("callSid"))
    frees = state in VOICE_STATES_FREEING
    seconds = fields.get("duration", "")
    billed = seconds.isascii() and seconds.isdigit() and len(seconds) < 7
    duration = int(seconds) if billed else None
    return [Receipt("ronglian", call_sid, state == "0", VOICE_STATES[state], frees, duration)]
