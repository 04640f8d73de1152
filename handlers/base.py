"""Base handlers: the one place where outcomes and errors become ihome-style JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar

import tornado.web

from handlers import signin
from handlers.application import SmsRegApplication
from handlers.errors import OriginRefused, describe_error
from handlers.from_services import FromServices
from handlers.signed_cookies import cookie_value
from services.accounts.sessions import Session
from services.accounts.users import User
from services.clientip import client_network, resolve_client_ip
from services.errors import Ret, ServiceError, Success, is_storage_failure
from services.hostapp.framework import CookieOut
from services.metrics import method_label
from services.validation import MalformedJson, parse_json

log = logging.getLogger(__name__)
SESSION_COOKIE = "session"
# With a host app our cookie takes another name: Flask's session cookie is `session` too.
HOST_MODE_SESSION_COOKIE = "smsreg_session"
# A login within the cooling-off period of a deletion cancels it, and its answer says so.
LOGIN_CANCELLED_DELETION = "登录成功，账号注销申请已取消"
# What a browser app on an allowed origin (tokens.cors_origins) may send and read.
CORS_REQUEST_HEADERS = "Authorization, Content-Type"
CORS_EXPOSED_HEADERS = "X-Request-Id, Retry-After, WWW-Authenticate"
CORS_MAX_AGE = "600"
# What Tornado passes to log_exception besides the exception (either may be None).
ErrorType = type[BaseException] | None
Traceback = TracebackType | None


class BaseHandler(tornado.web.RequestHandler):
    """Gives handlers typed access to the services the application holds."""

    application: SmsRegApplication  # Tornado types it as any Application
    errno: str | None = None
    refusal_reason: str | None = None  # the rate limit that refused this request, if any
    request_id = ""
    # The methods of this route that send an SMS: while admission control sheds sends, they
    # are answered 503 before a handler is built (handlers/shedding.py).
    sends_sms: ClassVar[frozenset[str]] = frozenset()

    def set_default_headers(self) -> None:
        # Runs again when an error answer replaces the headers: keep one id per request.
        # It correlates the access line, the answer and any error log line.
        if not self.request_id:
            self.request_id = self.application.new_request_id()
        self.set_header("X-Request-Id", self.request_id)

    def _request_summary(self) -> str:
        # Tornado puts this in its log lines: the URI would carry mobiles and CAPTCHA answers.
        route = getattr(self, "route_name", None) or type(self).__name__
        return f"{method_label(self.request.method)} {route} rid={self.request_id}"

    def log_exception(self, typ: ErrorType, value: BaseException | None, tb: Traceback) -> None:
        if isinstance(value, tornado.web.HTTPError):
            if not value.log_message:
                return  # a plain 404/405/413: the access line says enough
            # Tornado's messages may quote the offending value ("Invalid unicode in x: b'..'"):
            # keep the part before the value only.
            message = value.log_message or ""
            with contextlib.suppress(TypeError, ValueError):
                message = message % value.args if value.args else message
            message = message.split(":", 1)[0]
            log.warning("%d %s: %s", value.status_code, self._request_summary(), message)
            return
        super().log_exception(typ, value, tb)

    # The services this process built (services/composition.py), one typed attribute each.
    config = FromServices(lambda services: services.config)
    captchas = FromServices(lambda services: services.captchas)
    sms = FromServices(lambda services: services.sms)
    accounts = FromServices(lambda services: services.accounts)
    mobile_changes = FromServices(lambda services: services.mobile_changes)
    password_changes = FromServices(lambda services: services.password_changes)
    devices = FromServices(lambda services: services.devices)
    sessions = FromServices(lambda services: services.sessions)
    receipts = FromServices(lambda services: services.receipts)
    metrics = FromServices(lambda services: services.metrics)
    tokens = FromServices(lambda services: services.tokens)
    consent = FromServices(lambda services: services.consent)
    deletions = FromServices(lambda services: services.deletions)
    host = FromServices(lambda services: services.host)  # None: standalone
    # A CSRF token Tornado refused, to check as the host app's in prepare() (it needs the
    # host's session, which check_xsrf_cookie, being synchronous, cannot read).
    host_xsrf_token: str | None = None

    @property
    def session_cookie(self) -> str:
        """Our session cookie's name (another with a host app, whose cookie is `session`)."""
        return SESSION_COOKIE if self.host is None else HOST_MODE_SESSION_COOKIE

    def request_cookies(self) -> dict[str, str]:
        """The request's cookies, name -> value, for the host app's bridge."""
        return {name: morsel.value for name, morsel in self.request.cookies.items()}

    def apply_cookies(self, cookies: list[CookieOut]) -> None:
        """Set or clear the host app's cookies as the bridge asks."""
        for cookie in cookies:
            if cookie.value is None:
                self.clear_cookie(cookie.name)
                continue
            self.set_cookie(
                cookie.name,
                cookie.value,
                expires_days=None,
                max_age=cookie.max_age,
                httponly=cookie.httponly,
                samesite="Lax",
                secure=self.config.security.secure_cookies,
            )

    @property
    def client_address(self) -> str:
        """The client's address; forwarding headers count only from trusted proxies."""
        request = self.request
        return resolve_client_ip(
            request.remote_ip or "",
            request.headers.get("X-Forwarded-For"),
            request.headers.get("X-Real-IP"),
            self.application.trusted_proxies,
        )

    @property
    def client_ip(self) -> str:
        """The client as per-client limits count it: an IPv4 address, an IPv6 network."""
        prefix = self.config.security.ipv6_prefix
        return client_network(self.client_address, ipv6_prefix=prefix)

    @property
    def requester(self) -> str:
        """Which browser is asking: a digest of the raw token in its XSRF cookie.

        Stable for as long as the browser keeps the cookie (set on its first GET), unlike
        xsrf_token, which Tornado masks afresh for each request.
        """
        # A private Tornado API: no public one gives the unmasked token. xsrf_token is masked
        # anew per request; the cookie's text is absent on a browser's first request and,
        # when Tornado cannot read it, replaced by a new token this same request. The raw
        # token is what check_xsrf_cookie compares, so a requester is exactly a browser as
        # XSRF sees it. requirements.txt pins Tornado; tests/test_tornado_private_apis.py
        # checks the method's signature and (version, token bytes, timestamp) shape.
        _ = self.xsrf_token  # sets the cookie if this browser has none yet
        _, token, _ = self._get_raw_xsrf_token()
        return hashlib.sha256(token).hexdigest()[:32]

    def get_signed_cookie(
        self,
        name: str,
        value: str | None = None,
        max_age_days: float = 31,
        min_version: int | None = None,
    ) -> bytes | None:
        """Tornado's, with each cookie value's signature checked once per process
        (handlers/signed_cookies.py) and the Cookie header read without a SimpleCookie."""
        if min_version is not None:
            return super().get_signed_cookie(name, value, max_age_days, min_version)
        if value is None:
            value = cookie_value(self.request.headers.get("Cookie"), name)
        return self.application.verified_cookies.value(name, value, max_age_days)

    def succeed(self, body: bytes | str | None = None) -> None:
        """Finish a successful request with body as is (errno 0 in the access line)."""
        self.errno = Ret.OK.code
        self.finish(body)

    async def prepare(self) -> None:
        self.application.requests_started()
        self._counted = True
        host = self.host
        if host is None:
            if self.gives_csrf_cookies() and not self.get_cookie("csrf_token"):
                self.mirror_xsrf_cookie()
            return
        # With a host app the CSRF token in the cookies the front-ends read is the host's.
        if self.host_xsrf_token is not None:
            if not await host.framework.csrf_valid(self.request_cookies(), self.host_xsrf_token):
                raise tornado.web.HTTPError(403)
        elif self.request.method == "GET":
            cookies = await host.framework.csrf_cookies(self.request_cookies())
            if cookies is None:  # no host session to hold the host's token yet: ours
                self.mirror_xsrf_cookie()
            else:
                self.apply_cookies(cookies)

    def gives_csrf_cookies(self) -> bool:
        """Whether this request hands a browser without them its CSRF cookies: any GET but a
        GET that sends an SMS. That one always follows the CAPTCHA image's GET, which gave
        them (no front-end can ask for a code before it shows a CAPTCHA), and signing a new
        token and three Set-Cookie headers for every send cost ~7 % of its CPU (issue 26)."""
        method = self.request.method
        return method == "GET" and method not in self.sends_sms

    def mirror_xsrf_cookie(self) -> None:
        """Set Tornado's _xsrf cookie and a copy named csrf_token, which ihome's JS reads."""
        token = self.xsrf_token.decode()  # sets the _xsrf cookie as a side effect
        self.set_cookie("csrf_token", token, samesite="Lax")
        self.set_cookie("csrftoken", token, samesite="Lax")  # meiduo's AJAX reads this name

    def on_finish(self) -> None:
        if getattr(self, "_counted", False):
            self.application.requests_finished()

    def bearer_token(self) -> str | None:
        """The access token of an `Authorization: Bearer` header, None without one."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def session_id(self) -> str | None:
        """The session cookie's id; None on a request with a bearer token, which alone says
        who is asking (it skipped the XSRF check, so the cookie must not count)."""
        if self.bearer_token() is not None:
            return None
        value = self.get_signed_cookie(self.session_cookie, max_age_days=31)
        return value.decode() if value else None

    async def signed_in(self) -> Session | None:
        """Who is asking: by the bearer token when there is one, else by the session cookie
        (with a host app: by its session, services/hostapp/bridge.py)."""
        token = self.bearer_token()
        if token is not None:
            return await self.tokens.session(token)
        if self.host is not None:
            return await self.host.signed_in(
                self.session_id(), self.request_cookies(), seen_from=self.client_address
            )
        return await self.sessions.get(self.session_id(), seen_from=self.client_address)


class ApiHandler(BaseHandler):
    """JSON API: every answer is {"errno", "errmsg"[, "data"]}; business outcomes use HTTP 200."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        origin = self.request.headers.get("Origin")
        if origin and origin in self.application.cors_origins:
            # No Allow-Credentials: another origin's app authenticates with a bearer token;
            # a browser never sends it our cookies.
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS)
            self.set_header("Vary", "Origin")

    def check_xsrf_cookie(self) -> None:
        """A request with a bearer token needs no XSRF token: a cross-site form cannot send
        an Authorization header, and a script on another origin only after a CORS preflight
        that tokens.cors_origins allowed. The cookie is then ignored (session_id).

        With a host app, a token Tornado refuses may be the host's (Flask-WTF's, Django's):
        prepare() checks it against the host's session or cookie."""
        if self.bearer_token() is not None:
            return
        try:
            super().check_xsrf_cookie()
        except tornado.web.HTTPError:
            if self.host is None:
                raise
            self.host_xsrf_token = self.submitted_xsrf_token()

    def submitted_xsrf_token(self) -> str:
        """The CSRF token a request carries, in a header or a form field ("" without one)."""
        headers = self.request.headers
        for name in ("X-Xsrftoken", "X-Csrftoken"):
            if headers.get(name):
                return headers[name]
        for field in ("_xsrf", "csrfmiddlewaretoken", "csrf_token"):
            value = self.get_body_argument(field, None)
            if value:
                return value
        return ""

    async def options(self, *args: str) -> None:
        """A CORS preflight: allowed for the origins of tokens.cors_origins, else 403."""
        origin = self.request.headers.get("Origin")
        if not origin or origin not in self.application.cors_origins:
            raise OriginRefused()
        self.set_header("Access-Control-Allow-Methods", ", ".join(self.allowed_methods()))
        self.set_header("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS)
        self.set_header("Access-Control-Max-Age", CORS_MAX_AGE)
        self.set_status(204)
        self.errno = Ret.OK.code
        self.finish()

    async def prepare(self) -> None:
        await super().prepare()
        if len(self.request.body) > self.config.server.max_body_size:
            raise tornado.web.HTTPError(413)

    def compute_etag(self) -> None:
        return None  # answers are never cacheable: no ETag work per request

    def reply(self, errmsg: str = "成功", data: Mapping[str, object] | None = None) -> None:
        """Finish with OK."""
        self.write_outcome(Success(errmsg, dict(data or {})))

    def write_outcome(self, outcome: Success | ServiceError) -> None:
        """Finish with an outcome in this API family's JSON shape."""
        self.errno = outcome.ret.code
        if isinstance(outcome, ServiceError):
            self.refusal_reason = outcome.reason
        self.finish(json.dumps(self.envelope(outcome), ensure_ascii=False))

    def envelope(self, outcome: Success | ServiceError) -> dict[str, object]:
        """This answer's JSON: the family's shape (a handler may look at its request too)."""
        return self.family_envelope(outcome)

    @staticmethod
    def family_envelope(outcome: Success | ServiceError) -> dict[str, object]:
        """ihome/news shape: {"errno", "errmsg"[, "data"]}. Other families override this."""
        body: dict[str, object] = {"errno": outcome.ret.code, "errmsg": outcome.errmsg}
        if outcome.data:
            body["data"] = outcome.data
        return body

    async def log_in(self, user: User, persistent: bool = True) -> dict[str, object]:
        """Start a session for user, ending this browser's (handlers/signin.py)."""
        return await signin.log_in(self, user, persistent)

    async def log_out(self) -> None:
        """End this browser's session, or revoke a bearer token's family (handlers/signin.py)."""
        await signin.log_out(self)

    async def current_session(self) -> Session:
        """The logged-in session (session cookie or bearer token), or SESSIONERR."""
        session = await self.signed_in()
        if session is None:
            if self.bearer_token() is not None:
                self.set_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            raise ServiceError(Ret.SESSIONERR, "用户未登录")
        return session

    def json_body(self) -> dict[str, object]:
        """The request body as a JSON object, or PARAMERR."""
        try:
            body = parse_json(self.request.body)
        except MalformedJson:  # deep nesting and lone surrogates included
            raise ServiceError(Ret.PARAMERR, "请求体不是合法的JSON") from None
        if not isinstance(body, dict):
            raise ServiceError(Ret.PARAMERR, "请求体必须是JSON对象")
        return body

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements (for a 405's Allow header and a preflight's
        Allow-Methods); OPTIONS, the preflight every ApiHandler answers, is not listed."""
        base = tornado.web.RequestHandler
        return [
            m
            for m in self.SUPPORTED_METHODS
            if m != "OPTIONS" and getattr(type(self), m.lower()) is not getattr(base, m.lower())
        ]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, outcome = describe_error(status_code, exc)
        self.set_status(status)
        if status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        # Error answers must not keep headers of the failed attempt (e.g. an image type).
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        if outcome.retry_after is not None:
            self.set_header("Retry-After", str(outcome.retry_after))
        self.write_outcome(outcome)

    def log_exception(self, typ: ErrorType, value: BaseException | None, tb: Traceback) -> None:
        if isinstance(value, ServiceError):
            return  # an ordinary business outcome, logged by the access line
        if is_storage_failure(value):
            log.warning("storage unavailable on %s: %r", self._request_summary(), value)
            return
        super().log_exception(typ, value, tb)


class JsonNotFoundHandler(ApiHandler):
    """Unknown URLs get a JSON 404, not Tornado's HTML page."""

    route_name = "not_found"  # one metrics label for every unknown URL

    async def prepare(self) -> None:
        await super().prepare()
        raise tornado.web.HTTPError(404)
