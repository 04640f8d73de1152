"""Handlers for registration, login, logout and the profile (ihome routes)."""

from __future__ import annotations

from handlers.base import SESSION_COOKIE, ApiHandler
from services.errors import Ret, ServiceError


class UsersHandler(ApiHandler):
    """POST /api/v1.0/users {mobile, sms_code, password, password2}: register and log in."""

    route_name = "users"

    async def post(self) -> None:
        """Create the user, then start a session for it."""
        body = self.json_body()
        user = await self.services.accounts.register(
            body.get("mobile"), body.get("sms_code"), body.get("password"), body.get("password2")
        )
        await self.log_in(user)
        self.reply("注册成功")


class SessionsHandler(ApiHandler):
    """POST /api/v1.0/sessions {mobile, password or sms_code[, image_code, image_code_id]}."""

    route_name = "sessions"

    async def post(self) -> None:
        """Check the password or the SMS login code, then start a session."""
        body = self.json_body()
        accounts = self.services.accounts
        captcha = {"image_code_id": body.get("image_code_id"), "image_code": body.get("image_code")}
        if "sms_code" in body:
            if "password" in body:
                raise ServiceError(Ret.PARAMERR, "密码和短信验证码只能填写一项")
            user = await accounts.login_with_code(
                body.get("mobile"), body.get("sms_code"), self.client_ip, **captcha
            )
        else:
            user = await accounts.login(
                body.get("mobile"), body.get("password"), self.client_ip, **captcha
            )
        await self.log_in(user)
        self.reply("登录成功")


class PasswordResetHandler(ApiHandler):
    """POST /api/v1.0/password_reset {mobile, sms_code, password, password2}."""

    route_name = "password_reset"

    async def post(self) -> None:
        """Set the new password (every session of the user ends), then log the caller in."""
        body = self.json_body()
        user = await self.services.accounts.reset_password(
            body.get("mobile"), body.get("sms_code"), body.get("password"), body.get("password2")
        )
        await self.log_in(user)
        self.reply("密码已重置")


class UserMobileHandler(ApiHandler):
    """PUT /api/v1.0/user/mobile {mobile, sms_code}: the logged-in user's new mobile."""

    route_name = "user_mobile"

    async def put(self) -> None:
        """Move the account to the new mobile; every session ends, the caller gets a new one."""
        session = await self.current_session()
        body = self.json_body()
        user = await self.services.accounts.change_mobile(
            session["user_id"], body.get("mobile"), body.get("sms_code")
        )
        await self.log_in(user)
        self.reply("手机号已更换", {"mobile": user.mobile, "name": user.name})


class SessionHandler(ApiHandler):
    """GET /api/v1.0/session (who is logged in) and DELETE (log out)."""

    route_name = "session"

    async def get(self) -> None:
        """ihome's login check: errmsg "true" with the name, or 4101 "false"."""
        session = await self.services.sessions.get(self.session_id())
        if session is None:
            raise ServiceError(Ret.SESSIONERR, "false")
        self.reply("true", {"name": session["name"]})

    async def delete(self) -> None:
        """Delete the server-side session and the cookie."""
        await self.services.sessions.delete(self.session_id())
        self.clear_cookie(SESSION_COOKIE)
        self.reply("OK")


class UserHandler(ApiHandler):
    """GET /api/v1.0/user: the logged-in user's profile."""

    route_name = "user"

    async def get(self) -> None:
        session = await self.current_session()
        user = await self.services.users.by_id(session["user_id"])
        if user is None:  # deleted since login
            await self.services.sessions.delete(self.session_id())
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        self.reply("OK", user.profile())


ROUTES = [
    (r"/api/v1\.0/users", UsersHandler),
    (r"/api/v1\.0/sessions", SessionsHandler),
    (r"/api/v1\.0/session", SessionHandler),
    (r"/api/v1\.0/user", UserHandler),
    (r"/api/v1\.0/user/mobile", UserMobileHandler),
    (r"/api/v1\.0/password_reset", PasswordResetHandler),
]
