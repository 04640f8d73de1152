"""Operations endpoints: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

import asyncio

import tornado.web

from handlers.base import ApiHandler, BaseHandler
from handlers.from_services import FromServices
from services.clientip import address_in


class MetricsHandler(ApiHandler):
    """GET /metrics: Prometheus text format (all worker processes summed).

    Answered only to security.metrics_allow (default loopback); anyone else gets the same
    JSON 404 as an unknown URL: route names, refusal counts and send rates are not public.
    """

    route_name = "metrics"

    def get(self) -> None:
        if not address_in(self.client_address, self.application.metrics_allow):
            raise tornado.web.HTTPError(404)
        body, content_type = self.metrics.exposition()
        self.set_header("Content-Type", content_type)
        self.finish(body)


class HealthHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers."""

    route_name = "healthz"

    def get(self) -> None:
        self.finish({"status": "ok"})


class ReadyHandler(BaseHandler):
    """GET /readyz: Redis and MySQL answer in time (else 503: take me out of rotation)."""

    route_name = "readyz"
    # The stores themselves, not a service: what is checked here is that they answer.
    redis = FromServices(lambda services: services.redis)
    db = FromServices(lambda services: services.db)

    async def get(self) -> None:
        checks = {"redis": self._redis(), "mysql": self._mysql()}
        results = await asyncio.gather(*checks.values(), return_exceptions=True)
        report = {
            name: "ok" if ok is True else "down" for name, ok in zip(checks, results, strict=False)
        }
        ready = all(value == "ok" for value in report.values())
        self.set_status(200 if ready else 503)
        self.finish({"status": "ready" if ready else "unavailable", **report})

    async def _redis(self) -> bool:
        timeout = self.config.redis.socket_timeout
        return bool(await asyncio.wait_for(self.redis.ping(), timeout))

    async def _mysql(self) -> bool:
        return await self.db.fetch_one("SELECT 1") == (1,)


ROUTES = [
    (r"/metrics", MetricsHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
]
