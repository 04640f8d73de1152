"""Handlers for the image CAPTCHA and the SMS code (ihome routes)."""

from __future__ import annotations

from handlers.base import ApiHandler
from handlers.captcha import CaptchaImageHandler
from services.captcha.service import AUDIO_CONTENT_TYPE
from services.codes.purposes import Purpose


class IhomeCaptchaImageHandler(CaptchaImageHandler):
    """GET /api/v1.0/image_codes/<image_code_id>: a new CAPTCHA image."""

    route_name = "image_codes"


class IhomeCaptchaAudioHandler(ApiHandler):
    """GET /api/v1.0/image_codes/<image_code_id>/audio: the same CAPTCHA, spoken (WAV)."""

    route_name = "image_codes_audio"

    async def get(self, image_code_id: str) -> None:
        """Speak the text of an issued CAPTCHA."""
        audio = await self.captchas.audio(image_code_id, self.client_ip)
        self.set_header("Content-Type", AUDIO_CONTENT_TYPE)
        self.succeed(audio)


class IhomeSmsCodeQueryHandler(ApiHandler):
    """GET /api/v1.0/sms_codes/<mobile>?image_code=…&image_code_id=…"""

    route_name = "sms_codes"
    sends_sms = frozenset({"GET"})

    async def get(self, mobile: str) -> None:
        """Send an SMS code to mobile once the CAPTCHA answer checks out."""
        sent = await self.sms.send_code(
            mobile,
            self.get_query_argument("image_code", None),
            self.get_query_argument("image_code_id", None),
            self.client_ip,
            self.get_query_argument("channel", None),
            altcha=self.get_query_argument("altcha", None),
        )
        self.reply("发送成功", {"retry_after": sent.retry_after, "send_id": sent.send_id})


class IhomeSmsCodeJsonHandler(ApiHandler):
    """POST /api/v1.0/sms_codes JSON {mobile, image_code, image_code_id[, channel, purpose]}
    (confirm_mobile: no mobile, the code goes to the logged-in user's own)."""

    route_name = "sms_codes"
    sends_sms = frozenset({"POST"})

    async def post(self) -> None:
        """Same flow as the GET form, parameters from a JSON body, plus an optional purpose
        (register, login, reset_password; change_mobile and confirm_mobile for the logged-in
        user)."""
        body = self.json_body()
        purpose = Purpose.parse(body.get("purpose"))
        user_id = None
        if purpose.needs_session:
            user_id = (await self.current_session())["user_id"]
        sent = await self.sms.send_code(
            body.get("mobile"),
            body.get("image_code"),
            body.get("image_code_id"),
            self.client_ip,
            body.get("channel"),
            altcha=body.get("altcha"),
            purpose=purpose,
            user_id=user_id,
        )
        self.reply("发送成功", {"retry_after": sent.retry_after, "send_id": sent.send_id})


class IhomeSmsSendStatusHandler(ApiHandler):
    """GET /api/v1.0/sms_sends/<send_id>: how a send is doing ({status, channel, updated_at})."""

    route_name = "sms_sends"

    async def get(self, send_id: str) -> None:
        self.reply("成功", await self.receipts.send_status(send_id))


ROUTES = [
    (r"/api/v1\.0/image_codes/([^/]*)", IhomeCaptchaImageHandler),
    (r"/api/v1\.0/image_codes/([^/]*)/audio", IhomeCaptchaAudioHandler),
    (r"/api/v1\.0/sms_codes/([^/]*)", IhomeSmsCodeQueryHandler),
    (r"/api/v1\.0/sms_codes", IhomeSmsCodeJsonHandler),
    (r"/api/v1\.0/sms_sends/([^/]*)", IhomeSmsSendStatusHandler),
]
