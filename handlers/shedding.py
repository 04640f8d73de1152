"""Shedding an SMS send before Tornado builds a handler for it.

While admission control sheds sends (services/codes/admission.py), most requests to the send routes
are answered 503, and under a flood those answers compete for the CPU with the sends that were
admitted. Built as a RequestHandler, a shed costs what any request costs: the handler, its
headers reset twice, the exception raised and turned into JSON. Answered here instead, it costs
little more than parsing the request: a prepared JSON body written straight to the connection.
Everything else of a shed stays as it was: decided by the same gate, nothing used, counted or
stored, the family's JSON shape, Retry-After, a request id, one access line and the metrics.

A send this check lets through takes its place (or is shed) in SmsCodeService.send_code, once
its reservation succeeded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol, cast

import tornado.web
from tornado import httputil

from handlers.from_services import FromServices
from services.codes.admission import Overloaded
from services.errors import ServiceError, Success

if TYPE_CHECKING:
    from handlers.application import SmsRegApplication


class SendsSms(Protocol):
    """What this module needs of an SMS-send handler class (handlers/base.py ApiHandler)."""

    route_name: str
    sends_sms: frozenset[str]

    @staticmethod
    def family_envelope(outcome: Success | ServiceError) -> dict[str, object]: ...


# A private Tornado API, kept for a measured gain: answered here, before a RequestHandler is
# built, a shed costs 246 µs of server CPU instead of 409 µs as a handler (every send shed,
# 200 clients, 3 rounds: bench/results/shed-cost.json, docs/PERFORMANCE.md "A cheaper shed").
# We rely on _HandlerDelegate's constructor (what Application.get_handler_delegate passes), on
# finish() calling execute() once the body is read, and on the attributes read below;
# requirements.txt pins Tornado, and tests/test_tornado_private_apis.py fails, saying what to
# re-check, if an upgrade changes any of them.
class SheddingDelegate(tornado.web._HandlerDelegate):
    """Runs the send route's handler, unless admission control sheds sends right now."""

    application: SmsRegApplication
    sms = FromServices(lambda services: services.sms)

    def execute(self) -> Awaitable[None] | None:
        # Decided here, with the whole request read, where the handler would be built.
        refusal = self.sms.overloaded()
        if refusal is None:
            return super().execute()
        if refusal.hold > 0:
            # Answered later, by a timer: the connection waits (it reads no next request
            # meanwhile), the CPU does not (services/codes/admission.py, shed_delay).
            self._held = asyncio.ensure_future(self._answer_later(refusal))
            return self._held
        self._answer(refusal)
        return None

    async def _answer_later(self, refusal: Overloaded) -> None:
        await asyncio.sleep(refusal.hold)
        self._answer(refusal)

    def _answer(self, refusal: Overloaded) -> None:
        application, request = self.application, self.request
        route = cast("SendsSms", self.handler_class)  # routed here for its sends_sms
        body = json.dumps(route.family_envelope(refusal), ensure_ascii=False).encode()
        request_id = application.new_request_id()
        headers = httputil.HTTPHeaders(
            {
                "Content-Type": "application/json; charset=UTF-8",
                "Cache-Control": "no-store",
                "Retry-After": str(refusal.retry_after),
                "X-Request-Id": request_id,
                "Date": httputil.format_timestamp(time.time()),
                "Content-Length": str(len(body)),
            }
        )
        start = httputil.ResponseStartLine("", refusal.http_status, "Service Unavailable")
        connection = self.connection
        if connection is not None:  # None: an HTTPServerRequest built without a connection
            connection.write_headers(start, headers, body)
            connection.finish()
        application.log_answer(
            route.route_name,
            request,
            refusal.http_status,
            errno=refusal.ret.code,
            request_id=request_id,
            refusal_reason=refusal.reason,
        )
