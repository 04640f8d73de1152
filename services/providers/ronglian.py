"""Ronglian (容联云通讯) as a provider: TemplateSMS for SMS, VoiceVerify for voice codes, and
the status reports Ronglian pushes back (parse_ronglian_sms, parse_ronglian_voice)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.providers.base import Channel, CodeMessage
from services.providers.pushes import (
    MalformedReceipt,
    Receipt,
    json_document,
    valid_message_id,
    xml_fields,
)
from services.providers.ronglian_client import RonglianClient


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
    return [Receipt("ronglian", call_sid, state == "0", VOICE_STATES[state], frees)]
