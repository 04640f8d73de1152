"""Ronglian (容联云通讯) as a provider: TemplateSMS through services.ronglian.RonglianClient."""

from __future__ import annotations

from services.providers.base import Channel, CodeMessage
from services.ronglian import RonglianClient


class RonglianProvider:
    """Sends codes with the configured template: {1} = code, {2} = minutes it stays valid."""

    name = "ronglian"
    channels = frozenset({Channel.SMS})

    def __init__(self, client: RonglianClient, template_id: str) -> None:
        self._client = client
        self._template_id = template_id

    async def send(self, message: CodeMessage) -> str:
        return await self._client.send_template_sms(
            message.mobile, [message.code, str(message.ttl_minutes)], self._template_id
        )
