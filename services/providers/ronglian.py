"""Ronglian (容联云通讯) as a provider: TemplateSMS for SMS, VoiceVerify for voice codes."""

from __future__ import annotations

from dataclasses import dataclass

from services.providers.base import Channel, CodeMessage
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
