"""The CAPTCHA image handler every family's image route subclasses.

The families' routes: IhomeCaptchaImageHandler (handlers/codes.py, with ihome's spoken CAPTCHA),
NewsCaptchaImageHandler (handlers/news.py), MeiduoCaptchaImageHandler (handlers/meiduo.py).
"""

from __future__ import annotations

from handlers.base import ApiHandler
from services.captcha.service import CAPTCHA_CONTENT_TYPE


class CaptchaImageHandler(ApiHandler):
    """GET: a new CAPTCHA image, remembered under the id the client chose.

    Each family subclasses this only for where the id comes from and the shape of its errors.
    """

    def captcha_id(self, *path_args: str) -> str:
        """The client's id for this CAPTCHA: by default the route's one path argument."""
        return path_args[0]

    async def get(self, *path_args: str) -> None:
        captcha_id = self.captcha_id(*path_args)
        image = await self.captchas.create(captcha_id, self.client_ip, self.requester)
        self.set_header("Content-Type", CAPTCHA_CONTENT_TYPE)
        self.succeed(image)
