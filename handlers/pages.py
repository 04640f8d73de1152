"""HTML pages of the ihome front-end: register, login and the index.

The pages are static templates; everything dynamic (CAPTCHA, SMS, login state) goes through the
JSON API from static/js, so a page never depends on a session or a database.
"""

from __future__ import annotations

from handlers.base import BaseHandler

# Only our own origin: no inline scripts or styles, no CDN (the server must work offline).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "media-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class PageHandler(BaseHandler):
    """Renders one template with the page security headers."""

    template = ""
    route_name = "page"

    def set_default_headers(self) -> None:
        super().set_default_headers()
        # no-cache, not no-store: the browser may keep the page but must revalidate it, so a
        # deploy is seen at once while back/forward navigation stays cheap.
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def get(self) -> None:
        self.render(self.template)


class IndexPageHandler(PageHandler):
    """/ and /index.html: the logged-in name and a logout button, or register/login links."""

    template = "index.html"
    route_name = "page:index"


class RegisterPageHandler(PageHandler):
    """/register.html: mobile, image CAPTCHA (also as audio), SMS code, password."""

    template = "register.html"
    route_name = "page:register"


class LoginPageHandler(PageHandler):
    """/login.html: mobile and password, or (second tab) mobile and an SMS login code."""

    template = "login.html"
    route_name = "page:login"


class ResetPasswordPageHandler(PageHandler):
    """/reset_password.html (忘记密码): mobile, CAPTCHA, SMS code, the new password twice."""

    template = "reset_password.html"
    route_name = "page:reset_password"


class MyPageHandler(PageHandler):
    """/my.html: the masked mobile, 更换手机号 (code to the new number), 退出."""

    template = "my.html"
    route_name = "page:my"


ROUTES = [
    (r"/", IndexPageHandler),
    (r"/index\.html", IndexPageHandler),
    (r"/register\.html", RegisterPageHandler),
    (r"/login\.html", LoginPageHandler),
    (r"/reset_password\.html", ResetPasswordPageHandler),
    (r"/my\.html", MyPageHandler),
]
