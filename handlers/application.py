"""The Tornado application: holds the services, counts requests in flight, logs each one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import tornado.web

from services.clientip import parse_networks
from services.composition import Services
from services.metrics import method_label

ROOT = Path(__file__).resolve().parent.parent
access_log = logging.getLogger("smsreg.access")
# (URL pattern, handler class): every handler module's ROUTES (handlers/routes.py).
Route = tuple[str, type[tornado.web.RequestHandler]]


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

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """One access line and the request metrics: no query string (it holds CAPTCHA answers).

        Any handler may end here (static files too): what the API handlers add is read with
        getattr.
        """
        request = handler.request
        route = getattr(handler, "route_name", None) or type(handler).__name__
        method = method_label(request.method)
        errno = getattr(handler, "errno", None) or "-"
        seconds = request.request_time()
        status = handler.get_status()
        request_id = getattr(handler, "request_id", "") or "-"
        access_log.log(
            logging.INFO if status < 500 else logging.ERROR,
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
        metrics = self.services.metrics
        metrics.requests.labels(route, method, errno).inc()
        metrics.request_seconds.labels(route).observe(seconds)
        reason = getattr(handler, "refusal_reason", None)
        if reason:
            metrics.refusals.labels(reason).inc()
