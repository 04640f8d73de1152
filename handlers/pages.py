"""HTML pages of the ihome front-end: register, login and the index.

The pages are static templates; everything dynamic (CAPTCHA, SMS, login state) goes through the
JSON API from static/js, so a page never depends on a session or a database.
"""

from __future__ import annotations

from typing import Any

from handlers.application import Route
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
    """Renders the page its path names, templates/<page>.html (/ is the index), with the page
    security headers."""

    def initialize(self) -> None:
        page = self.request.path.rsplit("/", 1)[-1].removesuffix(".html") or "index"
        self.template = f"{page}.html"
        self.route_name = f"page:{page}"

    def set_default_headers(self) -> None:
        super().set_default_headers()
        # no-cache, not no-store: the browser may keep the page but must revalidate it, so a
        # deploy is seen at once while back/forward navigation stays cheap.
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def get_template_namespace(self) -> dict[str, Any]:
        """Every page gets the brand and the agreements (config `brand`, `consent`)."""
        namespace = super().get_template_namespace()
        namespace["brand"] = self.config.brand
        namespace["consent"] = self.config.consent
        namespace["deletion"] = self.config.deletion
        return namespace

    def get(self) -> None:
        self.render(self.template)


class BrandStyleHandler(BaseHandler):
    """GET /brand.css: the brand colours (config `brand`) as the stylesheet's variables; a
    stylesheet of our origin, as the pages' CSP allows no inline style."""

    route_name = "brand_css"

    def get(self) -> None:
        brand = self.config.brand  # #rrggbb, checked at start: nothing to escape
        self.set_header("Content-Type", "text/css; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.succeed(
            f":root {{\n  --brand: {brand.colour};\n  --brand-dark: {brand.colour_dark};\n}}\n"
        )


ROUTES: list[Route] = [
    # The logged-in name and a logout button, or register/login links.
    (r"/", PageHandler),
    (r"/index\.html", PageHandler),
    # Mobile, image CAPTCHA (also as audio), SMS code, password.
    (r"/register\.html", PageHandler),
    # Mobile and password, or (second tab) mobile and an SMS login code.
    (r"/login\.html", PageHandler),
    # 忘记密码: mobile, CAPTCHA, SMS code, the new password twice.
    (r"/reset_password\.html", PageHandler),
    # The masked mobile, 更换手机号 (code to the new number), 退出, 注销账号.
    (r"/my\.html", PageHandler),
    # The shipped placeholders of the 用户协议 and 隐私政策 (consent.terms_url, privacy_url).
    (r"/terms\.html", PageHandler),
    (r"/privacy\.html", PageHandler),
    (r"/brand\.css", BrandStyleHandler),
]
