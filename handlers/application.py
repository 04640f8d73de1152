"""The Tornado application: holds the services, counts requests in flight, logs each one."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import tornado.web
from tornado import httputil

from handlers.shedding import SheddingDelegate
from handlers.signed_cookies import VerifiedCookies
from services.clientip import parse_networks
from services.composition import Services
from services.config.rules import origin_list
from services.metrics import method_label

ROOT = Path(__file__).resolve().parent.parent
access_log = logging.getLogger("smsreg.access")
# (URL pattern, handler class): every handler module's ROUTES (handlers/routes.py).
Route = tuple[str, type[tornado.web.RequestHandler]]
# The routes that send codes: their refusals and sheds are charted by the console.
SMS_ROUTES = frozenset({"sms_codes", "meiduo_sms_codes", "news_sms_code"})


class SmsRegApplication(tornado.web.Application):
    """The application every handler runs in (BaseHandler.application is typed as this)."""

    def __init__(
        self,
        services: Services,
        routes: list[Route],
        not_found: type[tornado.web.RequestHandler],
    ) -> None:
        self.services = services
        self.in_flight = 0
        config = services.config
        self.trusted_proxies = parse_networks(config.security.trusted_proxies)
        self.metrics_allow = parse_networks(config.security.metrics_allow)
        self.cors_origins = origin_list(config.tokens.cors_origins)
        self.verified_cookies = VerifiedCookies(config.security.cookie_secret)
        self._idle = asyncio.Event()
        self._idle.set()
        super().__init__(
            routes,
            default_handler_class=not_found,
            cookie_secret=config.security.cookie_secret,
            xsrf_cookies=True,
            xsrf_cookie_kwargs={"httponly": False, "samesite": "Lax"},
            template_path=str(ROOT / "templates"),
            static_path=str(ROOT / "static"),
            compress_response=False,
        )

    def requests_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def requests_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    async def wait_idle(self, deadline: float) -> bool:
        """Wait until no request is in flight; False if `deadline` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), deadline)
        except TimeoutError:
            return False
        return True

    def get_handler_delegate(
        self,
        request: httputil.HTTPServerRequest,
        target_class: type[tornado.web.RequestHandler],
        target_kwargs: dict[str, Any] | None = None,
        path_args: list[bytes] | None = None,
        path_kwargs: dict[str, bytes] | None = None,
    ) -> tornado.web._HandlerDelegate:
        # A method that sends an SMS may be shed before its handler is built (shedding.py).
        if request.method in getattr(target_class, "sends_sms", ()):
            return SheddingDelegate(
                self, request, target_class, target_kwargs, path_args, path_kwargs
            )
        return super().get_handler_delegate(
            request, target_class, target_kwargs, path_args, path_kwargs
        )

    @staticmethod
    def new_request_id() -> str:
        """An id for one request: it ties its access line, its answer and any error log."""
        return uuid.uuid4().hex[:16]

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """Tornado's hook at the end of every request handler (static files too): what the API
        handlers add is read with getattr."""
        self.log_answer(
            getattr(handler, "route_name", None) or type(handler).__name__,
            handler.request,
            handler.get_status(),
            errno=getattr(handler, "errno", None),
            request_id=getattr(handler, "request_id", ""),
            refusal_reason=getattr(handler, "refusal_reason", None),
            quiet=getattr(handler, "quiet_access_line", False),
        )

    def log_answer(
        self,
        route: str,
        request: httputil.HTTPServerRequest,
        status: int,
        *,
        errno: str | None,
        request_id: str,
        refusal_reason: str | None,
        quiet: bool = False,
    ) -> None:
        """One access line and the request metrics: no query string (it holds CAPTCHA answers).

        quiet: the line is DEBUG unless the answer is a 5xx (forward auth: nginx logs the
        request it guards, and formatting a line costs as much as the check itself).
        """
        method = method_label(request.method)
        errno = errno or "-"
        seconds = request.request_time()
        request_id = request_id or "-"
        level = logging.ERROR if status >= 500 else logging.DEBUG if quiet else logging.INFO
        if not access_log.isEnabledFor(level):
            self._count(route, method, errno, seconds, refusal_reason)
            return
        access_log.log(
            level,
            "%s %s %s errno=%s %.1fms rid=%s",
            status,
            method,
            route,
            errno,
            1000.0 * seconds,
            request_id,
            extra={
                "status": status,
                "method": method,
                "route": route,
                "errno": errno,
                "duration_ms": round(1000.0 * seconds, 2),
                "request_id": request_id,
            },
        )
        self._count(route, method, errno, seconds, refusal_reason)

    def _count(
        self, route: str, method: str, errno: str, seconds: float, refusal_reason: str | None
    ) -> None:
        metrics = self.services.metrics
        metrics.requests.labels(route, method, errno).inc()
        metrics.request_seconds.labels(route).observe(seconds)
        if refusal_reason:
            metrics.refusals.labels(refusal_reason).inc()
            if route in SMS_ROUTES:
                shed = refusal_reason == "overloaded"
                self.services.history.add("shed" if shed else "refused")
