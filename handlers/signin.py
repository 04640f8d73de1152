"""Logging in and out in a handler: our session and cookie, a bearer client's tokens, and
with a host app its session and cookies too (services/hostapp/bridge.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.accounts.devices import device_summary
from services.accounts.users import User
from services.hostapp.framework import CookieOut

if TYPE_CHECKING:  # handlers/base.py imports this module
    from handlers.base import BaseHandler


async def log_in(handler: BaseHandler, user: User, persistent: bool) -> dict[str, object]:
    """Start a session for user, ending the one this browser had (session rotation).

    A session id planted or seen before the login (e.g. on a shared computer) must not
    become, or stay, a logged-in session. Not persistent: a browser-session cookie
    (meiduo's login without "remember me"). An API client (bearer token) gets a new token
    pair instead, returned in the answer's data (its old family may have just ended).

    The data also says `deletion_cancelled` when the login cancelled the user's pending
    deletion (注销), which the answer should say (LOGIN_CANCELLED_DELETION). The check runs
    once the session exists (services/accounts/deletion.py: a deletion requested meanwhile
    ends that session); an account the purge is completing refuses the login and keeps no
    session.
    """
    await handler.accounts.admit(user)
    if handler.bearer_token() is not None:
        cancelled = await handler.deletions.after_login(user.user_id)
        data: dict[str, object] = {"tokens": (await handler.tokens.issue(user)).as_dict()}
        return {**data, "deletion_cancelled": True} if cancelled else data
    sessions = handler.sessions
    device = device_summary(handler.request.headers.get("User-Agent"))
    host_cookies: list[CookieOut] = []
    if handler.host is not None:  # the host app's session too, the one its pages read
        session_id, host_cookies = await handler.host.log_in(
            user,
            handler.session_id(),
            handler.request_cookies(),
            device=device,
            address=handler.client_address,
            persistent=persistent,
        )
    else:
        await sessions.delete(handler.session_id())
        session_id = await sessions.create(user, device=device, address=handler.client_address)
    try:
        cancelled = await handler.deletions.after_login(user.user_id)
    except BaseException:
        # A host session stays unnamed (its cookie is not sent) until it expires; the
        # purge that refused this login ends the user's host sessions anyway.
        await sessions.delete(session_id)
        raise
    handler.apply_cookies(host_cookies)
    security = handler.config.security
    handler.set_signed_cookie(
        handler.session_cookie,
        session_id,
        expires_days=None,
        max_age=security.session_ttl if persistent else None,
        httponly=True,
        samesite="Lax",
        secure=security.secure_cookies,
    )
    return {"deletion_cancelled": True} if cancelled else {}


async def log_out(handler: BaseHandler) -> None:
    """End this browser's session, on the server and in its cookie; with a bearer token,
    revoke the token's refresh family instead."""
    token = handler.bearer_token()
    if token is not None:  # the cookie does not count (it skipped XSRF): leave it be
        claims = handler.tokens.verify(token)
        if claims is not None:
            await handler.tokens.log_out(claims)
        return
    if handler.host is not None:  # and the host app's session, as its own logout would
        handler.apply_cookies(
            await handler.host.log_out(handler.session_id(), handler.request_cookies())
        )
    else:
        await handler.sessions.delete(handler.session_id())
    handler.clear_cookie(handler.session_cookie)
