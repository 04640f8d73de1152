"""news (新经资讯, Flask) routes under /passport: the ihome envelope and RET table.

Only routes and parameter names differ from ihome: every route calls the same services.
"""

from __future__ import annotations

from handlers.base import LOGIN_CANCELLED_DELETION, ApiHandler
from handlers.captcha import CaptchaImageHandler
from handlers.codes import IhomeSmsCodeJsonHandler


class NewsCaptchaImageHandler(CaptchaImageHandler):
    """GET /passport/image_code?imageCodeId=…"""

    route_name = "news_image_code"

    def captcha_id(self, *path_args: str) -> str:
        return self.get_query_argument("imageCodeId", "")


class NewsSmsCodeHandler(IhomeSmsCodeJsonHandler):
    """POST /passport/sms_code {mobile, image_code, image_code_id}: ihome's JSON form as is."""

    route_name = "news_sms_code"


class NewsRegisterHandler(ApiHandler):
    """POST /passport/register {mobile, smscode, password[, agree]}: no confirmation field in
    news; consent as on the ihome route (consent.require_from_news)."""

    route_name = "news_register"

    async def post(self) -> None:
        body = self.json_body()
        consent = self.consent.require(body.get("agree"), "news", self.client_address)
        password = body.get("password")
        user = await self.accounts.register(
            body.get("mobile"), body.get("smscode"), password, password, consent=consent
        )
        await self.log_in(user)
        self.reply("注册成功")


class NewsLoginHandler(ApiHandler):
    """POST /passport/login {mobile, passport}: the course front-end really names it passport."""

    route_name = "news_login"

    async def post(self) -> None:
        body = self.json_body()
        password = body.get("passport", body.get("password"))
        user = await self.accounts.login(
            body.get("mobile"),
            password,
            self.client_ip,
            image_code_id=body.get("image_code_id"),
            image_code=body.get("image_code"),
        )
        data = await self.log_in(user)
        if data.get("deletion_cancelled"):  # a login within the cooling-off period of a 注销
            self.reply(LOGIN_CANCELLED_DELETION, data)
            return
        self.reply("登录成功")


class NewsLogoutHandler(ApiHandler):
    """GET /passport/logout"""

    route_name = "news_logout"

    async def get(self) -> None:
        await self.log_out()
        self.reply("退出成功")


ROUTES = [
    (r"/passport/image_code", NewsCaptchaImageHandler),
    (r"/passport/sms_code", NewsSmsCodeHandler),
    (r"/passport/register", NewsRegisterHandler),
    (r"/passport/login", NewsLoginHandler),
    (r"/passport/logout", NewsLogoutHandler),
]
