"""The devices of an account (my.html, 登录设备): its live sessions, each with a short
summary of the browser it was started in, the address and time it was last used; ending one
of them, or every one but the caller's (退出其他设备).

A session is named by its handle (services/accounts/sessions.py handle_of), never by anything
that opens it, and only the caller's own sessions are searched: a handle of another user's
session ends nothing.

The caller is a browser (its session cookie) or an API client (its bearer token, whose
refresh-token family is its login). 退出其他设备 ends every other login of both kinds, the
API clients' refresh-token families too, and keeps the caller's own, whichever kind it is.
Ending one device by its handle ends that session only: the list shows sessions, and no
family belongs to a session (docs/SECURITY.md, "Devices").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.accounts.sessions import HANDLE_LENGTH, SessionStore, handle_of, parse_session_id
from services.errors import Ret, ServiceError
from services.tokens.service import TokenService

HANDLE_RE = re.compile(rf"[0-9a-f]{{{HANDLE_LENGTH}}}")
NOT_LOGGED_IN = "用户未登录"

# (pattern, name), first match wins: Edge and Opera say Chrome too, Chrome says Safari.
BROWSERS = (
    (re.compile(r"MicroMessenger/([0-9]+)"), "微信"),
    (re.compile(r"Edg(?:e|A|iOS)?/([0-9]+)"), "Edge"),
    (re.compile(r"OPR/([0-9]+)"), "Opera"),
    (re.compile(r"Firefox/([0-9]+)"), "Firefox"),
    (re.compile(r"(?:Chrome|CriOS|Chromium)/([0-9]+)"), "Chrome"),
    (re.compile(r"Version/([0-9]+)[.0-9]* (?:Mobile/\S+ )?Safari/"), "Safari"),
)
SYSTEMS = (
    (re.compile(r"iPhone|iPad|iPod"), "iOS"),
    (re.compile(r"Android"), "Android"),
    (re.compile(r"HarmonyOS|OpenHarmony"), "HarmonyOS"),
    (re.compile(r"Windows"), "Windows"),
    (re.compile(r"Mac OS X|Macintosh"), "macOS"),
    (re.compile(r"CrOS"), "ChromeOS"),
    (re.compile(r"Linux"), "Linux"),
)
UNKNOWN_DEVICE = "未知设备"


def device_summary(user_agent: str | None) -> str:
    """ "Chrome 120 · Windows"-style: browser, major version and system, or 未知设备. Only
    these known words and digits are kept, so nothing the client wrote is shown as is."""
    agent = (user_agent or "")[:512]
    browser = next(
        (f"{name} {match.group(1)}" for rule, name in BROWSERS if (match := rule.search(agent))),
        None,
    )
    system = next((name for rule, name in SYSTEMS if rule.search(agent)), None)
    parts = [part for part in (browser, system) if part]
    return " · ".join(parts) if parts else UNKNOWN_DEVICE


@dataclass(frozen=True)
class Device:
    """One live session as the device list shows it."""

    handle: str
    device: str
    address: str
    created: int | None  # Unix s; None for sessions started before the device list
    last_seen: int | None
    current: bool  # the session of the request that asks

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.handle,
            "device": self.device,
            "address": self.address,
            "created": self.created,
            "last_seen": self.last_seen,
            "current": self.current,
        }


@dataclass(frozen=True)
class Caller:
    """Who asks, and the login the request came with: a browser's session (its digest) or an
    API client's refresh-token family; the other is ""."""

    user_id: int
    session: str = ""
    family: str = ""


class DeviceService:
    """Lists and ends the sessions of the logged-in user."""

    def __init__(self, sessions: SessionStore, tokens: TokenService) -> None:
        self._sessions = sessions
        self._tokens = tokens

    async def _caller(self, session_id: str | None, access_token: str | None) -> Caller:
        """The caller's live login, or SESSIONERR: its access token when the request has one
        (the cookie does not count then, as on every route), else its session cookie."""
        if access_token is not None:
            claims = self._tokens.verify(access_token)
            if claims is None or await self._tokens.session(access_token) is None:
                raise ServiceError(Ret.SESSIONERR, NOT_LOGGED_IN)
            return Caller(claims.user_id, family=claims.family_id)
        parsed = parse_session_id(session_id)
        if parsed is None or await self._sessions.get(session_id) is None:
            raise ServiceError(Ret.SESSIONERR, NOT_LOGGED_IN)
        return Caller(parsed[0], session=parsed[1])

    async def devices(
        self, session_id: str | None, access_token: str | None = None
    ) -> list[Device]:
        """The caller's sessions: the current one first, then the most recently used."""
        caller = await self._caller(session_id, access_token)
        devices = [
            Device(
                handle=handle,
                device=session.get("device") or UNKNOWN_DEVICE,
                address=session.get("address", ""),
                created=session.get("created"),
                last_seen=session.get("seen"),
                current=digest == caller.session,
            )
            for handle, digest, session in await self._sessions.of_user(caller.user_id)
        ]
        devices.sort(key=lambda d: (not d.current, -(d.last_seen or 0), d.handle))
        return devices

    async def end(
        self, session_id: str | None, handle: object, access_token: str | None = None
    ) -> None:
        """End the caller's session named `handle` (one of another device): that session
        only, for no refresh-token family belongs to a session."""
        if not isinstance(handle, str) or not HANDLE_RE.fullmatch(handle):
            raise ServiceError(Ret.PARAMERR, "设备标识格式错误", field="id")
        caller = await self._caller(session_id, access_token)
        if caller.session and handle == handle_of(caller.session):
            raise ServiceError(Ret.PARAMERR, "当前设备请使用“退出”", field="id")
        ended = await self._sessions.end_by_handle(caller.user_id, handle, caller.session)
        if ended == -1:  # cannot be: the handle was compared above
            raise ServiceError(Ret.PARAMERR, "当前设备请使用“退出”", field="id")
        if ended == 0:
            raise ServiceError(Ret.NODATA, "该设备已退出", field="id")

    async def end_others(self, session_id: str | None, access_token: str | None = None) -> int:
        """End every login of the caller but this one (退出其他设备): every other session and
        every other refresh-token family, in one step; returns how many ended."""
        caller = await self._caller(session_id, access_token)
        return await self._sessions.end_others(caller.user_id, caller.session, caller.family)
