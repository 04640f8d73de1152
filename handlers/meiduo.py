"""meiduo (美多商城, Django) routes: {"code", "errmsg"} answers, RETCODE table, form posts.

Only the shape differs from ihome: every route calls the same services.
"""

from __future__ import annotations

import re
from typing import Any

import tornado.web

from handlers.base import ApiHandler
from handlers.captcha import CaptchaImageHandler
from handlers.errors import describe_error
from handlers.from_services import FromServices
from services.accounts.users import User
from services.errors import Ret, ServiceError, Success
from services.meiduo_pages import Page, echo

USERNAME_COOKIE = "username"  # meiduo's header greeting reads this plain cookie
USERNAME_COOKIE_AGE = 14 * 86400
MEIDUO_PASSWORD_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

# meiduo's RETCODE for each refusal, by the input it is about, then by the RET code.
CODE_BY_FIELD = {
    "image_code": "4001",  # IMAGECODEERR
    "username": "4004",  # USERERR
    "password": "4005",  # PWDERR
    "password2": "4006",  # CPWDERR
    "mobile": "4007",  # MOBILEERR
    "sms_code": "4008",  # SMSCODERR
    "allow": "4009",  # ALLOWERR
}
CODE_BY_RET = {
    Ret.OK: "0",
    Ret.REQERR: "4002",  # THROTTLINGERR
    Ret.PARAMERR: "4003",  # NECESSARYPARAMERR
    Ret.SESSIONERR: "4101",
    Ret.NODATA: "5003",  # NODATAERR
}
DEFAULT_CODE = "5000"  # DBERR 数据错误: storage, provider and unexpected failures


def meiduo_code(outcome: Success | ServiceError) -> str:
    if isinstance(outcome, Success) or outcome.ret is Ret.REQERR:
        return CODE_BY_RET[outcome.ret]
    return CODE_BY_FIELD.get(outcome.field or "") or CODE_BY_RET.get(outcome.ret, DEFAULT_CODE)


def meiduo_envelope(outcome: Success | ServiceError) -> dict[str, object]:
    """meiduo's JSON shape: {"code", "errmsg", ...data at the top level}."""
    return {"code": meiduo_code(outcome), "errmsg": outcome.errmsg, **outcome.data}


class MeiduoApiHandler(ApiHandler):
    """JSON in meiduo's shape."""

    @staticmethod
    def family_envelope(outcome: Success | ServiceError) -> dict[str, object]:
        return meiduo_envelope(outcome)


class MeiduoCaptchaImageHandler(MeiduoApiHandler, CaptchaImageHandler):
    """GET /image_codes/<uuid>/"""

    route_name = "meiduo_image_codes"


class MeiduoSmsCodeHandler(MeiduoApiHandler):
    """GET /sms_codes/<mobile>/?image_code=…&uuid=…"""

    route_name = "meiduo_sms_codes"
    sends_sms = frozenset({"GET"})

    async def get(self, mobile: str) -> None:
        sent = await self.sms.send_code(
            mobile,
            self.get_query_argument("image_code", None),
            self.get_query_argument("uuid", None),
            self.client_ip,
            altcha=self.get_query_argument("altcha", None),
        )
        self.reply("发送短信成功", {"retry_after": sent.retry_after})


class MeiduoMobileCountHandler(MeiduoApiHandler):
    """GET /mobiles/<mobile>/count/: is the mobile registered (0 or 1)?"""

    route_name = "meiduo_mobile_count"

    async def get(self, mobile: str) -> None:
        count = await self.accounts.count_mobile(mobile, self.client_ip)
        self.reply("OK", {"count": count})


class MeiduoUsernameCountHandler(MeiduoApiHandler):
    """GET /usernames/<username>/count/: is the username taken (0 or 1)?"""

    route_name = "meiduo_username_count"

    async def get(self, username: str) -> None:
        count = await self.accounts.count_username(username, self.client_ip)
        self.reply("OK", {"count": count})


class MeiduoFormHandler(MeiduoApiHandler):
    """meiduo's native form posts: success redirects, a refusal is a short text page (or
    the meiduo page again, with families.meiduo_templates)."""

    page: Page | None = None  # the meiduo template this form lives on
    meiduo_pages = FromServices(lambda services: services.meiduo_pages)  # None: no templates

    def check_xsrf_cookie(self) -> None:
        # Django forms carry the token as csrfmiddlewaretoken; Tornado reads it from a header.
        token = self.get_body_argument("csrfmiddlewaretoken", None)
        if token and "X-Xsrftoken" not in self.request.headers:
            self.request.headers["X-Xsrftoken"] = token
        super().check_xsrf_cookie()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        status, outcome = describe_error(status_code, kwargs.get("exc_info", (None,) * 3)[1])
        pages = self.meiduo_pages
        page = self.page if pages is not None and self.request.method == "POST" else None
        if status == 200:
            # meiduo answers invalid input with 403 (HttpResponseForbidden) and re-renders
            # the form for the other refusals (HTTP 200, Django's render()): on the page when
            # we have meiduo's templates, else 400 with the message alone. No meiduo view
            # rate-limits or waits for storage: 429 and 503 tell clients what happened.
            status = 403 if outcome.ret is Ret.PARAMERR else 200 if page else 400
            if outcome.ret is Ret.REQERR:
                status = 429
            elif outcome.ret in (Ret.DBERR, Ret.THIRDERR):
                status = 503
        self.set_status(status)
        if outcome.retry_after is not None:
            self.set_header("Retry-After", str(outcome.retry_after))
        self.errno = outcome.ret.code
        if pages is not None and page is not None:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            # Rendered inline: these pages take ~0.1 ms (docs/API.md), less than handing
            # the work to an executor would cost, and their templates were compiled at start.
            context = self.page_context(outcome)
            self.finish(pages.render(page, self.xsrf_token.decode(), context))
            return
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(outcome.errmsg)

    def page_context(self, outcome: ServiceError) -> dict[str, str]:
        """meiduo's variables for this refusal, and the fields the user may see again."""
        try:
            form = self.form("username", "mobile")
        except tornado.web.HTTPError:  # a form that is not UTF-8: nothing to show again
            return {}
        return {"username": echo(form["username"]), "mobile": echo(form["mobile"])}

    def redirect(self, url: str, permanent: bool = False, status: int | None = None) -> None:
        """A form succeeds by redirecting (a refusal is written by write_error)."""
        self.errno = Ret.OK.code
        self.clear_header("Content-Type")  # an empty 302, not a JSON answer
        super().redirect(url, permanent, status)

    def form(self, *names: str) -> dict[str, str | None]:
        return {name: self.get_body_argument(name, None) for name in names}

    async def log_in_meiduo(self, user: User, persistent: bool = True) -> None:
        await self.log_in(user, persistent=persistent)
        self.set_cookie(USERNAME_COOKIE, user.name, max_age=USERNAME_COOKIE_AGE, samesite="Lax")


class MeiduoRegisterFormHandler(MeiduoFormHandler):
    """POST /register/ form (username, password, password2, mobile, sms_code, allow)."""

    route_name = "meiduo_register"
    page = "register"

    def page_context(self, outcome: ServiceError) -> dict[str, str]:
        context = super().page_context(outcome)
        if outcome.field == "sms_code":
            context["sms_code_errmsg"] = outcome.errmsg
        else:
            # register_errmsg in meiduo's own views; errmsg where a project's view passes
            # {code, errmsg} to the template (HuiDBK's register.html shows that one).
            context["register_errmsg"] = context["errmsg"] = outcome.errmsg
        return context

    async def post(self) -> None:
        form = self.form("username", "password", "password2", "mobile", "sms_code", "allow")
        check_meiduo_register_form(form)
        # allow=on (checked above) is meiduo's consent: recorded with the user.
        consent = self.consent.require(True, "meiduo", self.client_address)
        user = await self.accounts.register(
            form["mobile"],
            form["sms_code"],
            form["password"],
            form["password2"],
            form["username"],
            consent=consent,
        )
        await self.log_in_meiduo(user)
        self.redirect("/")


class MeiduoLoginFormHandler(MeiduoFormHandler):
    """POST /login/ form (username — a username or a mobile — password, remembered)."""

    route_name = "meiduo_login"
    page = "login"

    def page_context(self, outcome: ServiceError) -> dict[str, str]:
        return {**super().page_context(outcome), "account_errmsg": outcome.errmsg}

    async def post(self) -> None:
        form = self.form("username", "password", "remembered", "image_code", "image_code_id")
        user = await self.accounts.login(
            form["username"],
            form["password"],
            self.client_ip,
            by_username=True,
            image_code_id=form["image_code_id"],
            image_code=form["image_code"],
        )
        await self.log_in_meiduo(user, persistent=bool(form["remembered"]))
        self.redirect(safe_next(self.get_query_argument("next", "/")))


class MeiduoLogoutHandler(MeiduoFormHandler):
    """GET /logout/: end the session and go home."""

    route_name = "meiduo_logout"

    async def get(self) -> None:
        await self.log_out()
        self.clear_cookie(USERNAME_COOKIE)
        self.redirect("/")


def check_meiduo_register_form(form: dict[str, str | None]) -> None:
    """meiduo's own stricter rules, in its order; the services check the rest."""
    if not all(form[name] for name in ("username", "password", "password2", "mobile", "sms_code")):
        raise ServiceError(Ret.PARAMERR, "缺少必传参数")
    password = form["password"] or ""
    if not 8 <= len(password) <= 20 or not set(password) <= MEIDUO_PASSWORD_CHARS:
        raise ServiceError(Ret.PARAMERR, "请输入8-20位的密码", field="password")
    if form["allow"] != "on":
        raise ServiceError(Ret.PARAMERR, "请勾选用户协议", field="allow")


# A same-site path made of RFC 3986 path and query characters only. No backslash (browsers
# read "/\host" as "//host"), no control or space characters (a 500 in the Location header),
# no "//" start (protocol-relative), no scheme, no fragment.
SAFE_NEXT_RE = re.compile(r"/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")


def safe_next(target: str) -> str:
    """Where to go after login: a same-site path of safe characters, anything else is "/"."""
    return target if SAFE_NEXT_RE.fullmatch(target) else "/"


# Any URL under the first path segment of a meiduo route: an unknown one is meiduo's 404.
MEIDUO_ROOTS = ("image_codes", "sms_codes", "mobiles", "usernames", "register", "login", "logout")
MEIDUO_PATH_RE = re.compile(rf"/(?:{'|'.join(MEIDUO_ROOTS)})(?:/.*)?")

ROUTES = [
    (r"/image_codes/([^/]*)/", MeiduoCaptchaImageHandler),
    (r"/sms_codes/([^/]*)/", MeiduoSmsCodeHandler),
    (r"/mobiles/([^/]*)/count/", MeiduoMobileCountHandler),
    (r"/usernames/([^/]*)/count/", MeiduoUsernameCountHandler),
    (r"/register/", MeiduoRegisterFormHandler),
    (r"/login/", MeiduoLoginFormHandler),
    (r"/logout/", MeiduoLogoutHandler),
]
