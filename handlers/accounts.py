"""Handlers for registration, login, logout, the profile, the password and the devices
(ihome routes)."""

from __future__ import annotations

from handlers.base import LOGIN_CANCELLED_DELETION, ApiHandler
from services.accounts.users import User
from services.errors import Ret, ServiceError


async def checked_login(handler: ApiHandler, body: dict[str, object]) -> User:
    """The user whose password or SMS login code this body carries, through AccountService's
    login (throttle and CAPTCHA included): the one login of sessions and of API tokens."""
    accounts = handler.accounts
    image_code_id, image_code = body.get("image_code_id"), body.get("image_code")
    if "sms_code" in body:
        if "password" in body:
            raise ServiceError(Ret.PARAMERR, "密码和短信验证码只能填写一项")
        return await accounts.login_with_code(
            body.get("mobile"),
            body.get("sms_code"),
            handler.client_ip,
            image_code_id=image_code_id,
            image_code=image_code,
            agree=body.get("agree"),
        )
    return await accounts.login(
        body.get("mobile"),
        body.get("password"),
        handler.client_ip,
        image_code_id=image_code_id,
        image_code=image_code,
    )


class IhomeRegisterApiHandler(ApiHandler):
    """POST /api/v1.0/users {mobile, sms_code, password, password2[, agree]}: register and
    log in. Our pages send agree (must be true); ihome's front-end sends none
    (consent.require_from_ihome decides: services/accounts/consent.py)."""

    route_name = "users"

    async def post(self) -> None:
        """Create the user with its consent, then start a session for it."""
        body = self.json_body()
        consent = self.consent.require(body.get("agree"), "ihome", self.client_address)
        user = await self.accounts.register(
            body.get("mobile"),
            body.get("sms_code"),
            body.get("password"),
            body.get("password2"),
            consent=consent,
        )
        await self.log_in(user)
        self.reply("注册成功")


class IhomeLoginApiHandler(ApiHandler):
    """POST /api/v1.0/sessions {mobile, password or sms_code[, image_code, image_code_id,
    agree]}: with an SMS code, a number without an account may sign up (agree: consent)."""

    route_name = "sessions"

    async def post(self) -> None:
        """Check the password or the SMS login code, then start a session."""
        user = await checked_login(self, self.json_body())
        data = await self.log_in(user)
        if data.get("deletion_cancelled"):  # a login within the cooling-off period of a 注销
            self.reply(LOGIN_CANCELLED_DELETION, data)
            return
        self.reply("登录成功")


class IhomePasswordResetApiHandler(ApiHandler):
    """POST /api/v1.0/password_reset {mobile, sms_code, password, password2}."""

    route_name = "password_reset"

    async def post(self) -> None:
        """Set the new password (every session of the user ends), then log the caller in."""
        body = self.json_body()
        user = await self.accounts.reset_password(
            body.get("mobile"), body.get("sms_code"), body.get("password"), body.get("password2")
        )
        data = await self.log_in(user)
        if data.get("deletion_cancelled"):
            self.reply("密码已重置，账号注销申请已取消", data)
            return
        self.reply("密码已重置")


class IhomeMobileChangeApiHandler(ApiHandler):
    """PUT /api/v1.0/user/mobile {mobile, sms_code, password or current_sms_code[,
    image_code, image_code_id]}: the logged-in user's new mobile."""

    route_name = "user_mobile"

    async def put(self) -> None:
        """Move the account to the new mobile; every session ends, the caller gets a new one."""
        session = await self.current_session()
        body = self.json_body()
        user = await self.mobile_changes.change(
            session["user_id"],
            body.get("mobile"),
            body.get("sms_code"),
            self.client_ip,
            password=body.get("password"),
            current_sms_code=body.get("current_sms_code"),
            image_code_id=body.get("image_code_id"),
            image_code=body.get("image_code"),
        )
        # Every session and token family ended: a new session, or a new token pair.
        fresh = await self.log_in(user)
        self.reply("手机号已更换", {"mobile": user.mobile, "name": user.name, **fresh})


class IhomeLoginStateApiHandler(ApiHandler):
    """GET /api/v1.0/session (who is logged in) and DELETE (log out)."""

    route_name = "session"

    async def get(self) -> None:
        """ihome's login check: errmsg "true" with the name, or 4101 "false"."""
        session = await self.signed_in()
        if session is None:
            raise ServiceError(Ret.SESSIONERR, "false")
        self.reply("true", {"name": session["name"]})

    async def delete(self) -> None:
        """Delete the server-side session and the cookie."""
        await self.log_out()
        self.reply("OK")


class IhomeProfileApiHandler(ApiHandler):
    """GET /api/v1.0/user: the logged-in user's profile. DELETE {sms_code, password[,
    image_code, image_code_id]}: ask for the account's deletion (注销)."""

    route_name = "user"

    async def get(self) -> None:
        user = await self.accounts.holder(await self.signed_in())
        self.reply("OK", user.profile())

    async def delete(self) -> None:
        """Record the deletion (completed after deletion.cooling_off_days by the purge); every
        session of the user ends, this browser's cookie too."""
        session = await self.current_session()
        body = self.json_body()
        pending = await self.deletions.request(
            session["user_id"],
            body.get("sms_code"),
            body.get("password"),
            self.client_ip,
            image_code_id=body.get("image_code_id"),
            image_code=body.get("image_code"),
        )
        self.clear_cookie(self.session_cookie)
        self.reply("注销申请已提交", pending.describe())


class IhomePasswordChangeApiHandler(ApiHandler):
    """PUT /api/v1.0/user/password {old_password, password, password2[, image_code,
    image_code_id]}: the logged-in user's new password."""

    route_name = "user_password"

    async def put(self) -> None:
        """Replace the password; every session ends, the caller gets a new one."""
        session = await self.current_session()
        body = self.json_body()
        user = await self.password_changes.change(
            session["user_id"],
            body.get("old_password"),
            body.get("password"),
            body.get("password2"),
            self.client_ip,
            image_code_id=body.get("image_code_id"),
            image_code=body.get("image_code"),
        )
        await self.log_in(user)
        self.reply("密码已修改")


class IhomeDevicesApiHandler(ApiHandler):
    """GET /api/v1.0/user/sessions (the account's sessions) and DELETE (every login but this
    one: sessions and API clients' refresh-token families). Cookie or bearer token."""

    route_name = "user_sessions"

    async def get(self) -> None:
        devices = await self.devices.devices(self.session_id(), self.bearer_token())
        self.reply("OK", {"sessions": [device.as_dict() for device in devices]})

    async def delete(self) -> None:
        ended = await self.devices.end_others(self.session_id(), self.bearer_token())
        self.reply("其他设备已退出", {"ended": ended})


class IhomeDeviceApiHandler(ApiHandler):
    """DELETE /api/v1.0/user/sessions/<id>: end one other session of the account."""

    route_name = "user_session"

    async def delete(self, handle: str) -> None:
        await self.devices.end(self.session_id(), handle, self.bearer_token())
        self.reply("该设备已退出")


ROUTES = [
    (r"/api/v1\.0/users", IhomeRegisterApiHandler),
    (r"/api/v1\.0/sessions", IhomeLoginApiHandler),
    (r"/api/v1\.0/session", IhomeLoginStateApiHandler),
    (r"/api/v1\.0/user", IhomeProfileApiHandler),
    (r"/api/v1\.0/user/mobile", IhomeMobileChangeApiHandler),
    (r"/api/v1\.0/user/password", IhomePasswordChangeApiHandler),
    (r"/api/v1\.0/user/sessions", IhomeDevicesApiHandler),
    (r"/api/v1\.0/user/sessions/([^/]{1,64})", IhomeDeviceApiHandler),
    (r"/api/v1\.0/password_reset", IhomePasswordResetApiHandler),
]
