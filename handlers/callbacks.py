"""Delivery receipts pushed by the providers: POST /callbacks/<token>/<provider>/<kind>.

Machines call these, not browsers: no XSRF cookie; the secret token in the path (and the
optional source allow-list) authenticates the push. Answers are in each provider's format.
"""

from __future__ import annotations

import json
from typing import Any

from handlers.base import ApiHandler, BaseHandler
from services.errors import is_storage_failure
from services.providers.aliyun import parse_aliyun_sms
from services.providers.pushes import MalformedReceipt
from services.providers.ronglian import parse_ronglian_sms, parse_ronglian_voice

PARSERS = {
    "ronglian/sms": parse_ronglian_sms,
    "ronglian/voice": parse_ronglian_voice,
    "aliyun/sms": parse_aliyun_sms,
}
XML_OK = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><statuscode>000000</statuscode></Response>'
)


class ReceiptCallbackHandler(ApiHandler):
    """Parse the push, apply it idempotently, acknowledge it the way the provider expects."""

    route_name = "callbacks"
    # An Aliyun push carries up to 1000 reports (~250 KB), beyond the API's max_body_size;
    # the connection-level server.max_request_size still bounds it.
    MAX_BODY = 512 * 1024

    async def prepare(self) -> None:
        await BaseHandler.prepare(self)  # not ApiHandler's max_body_size: that is for browsers
        if len(self.request.body) > self.MAX_BODY:
            self.answer_error(413, "body too large")

    def check_xsrf_cookie(self) -> None:
        """Providers hold no cookie: the path's secret token authenticates instead."""

    async def options(self, *args: str) -> None:
        """No browser app calls a provider's callback: no CORS preflight here."""
        self.answer_error(405, "method not allowed")

    async def post(self, token: str, kind: str) -> None:
        receipts = self.receipts
        if not receipts.authorized(token, self.client_ip):
            self.answer_error(403, "forbidden")
            return
        try:
            parsed = PARSERS[kind](self.request.body)
        except MalformedReceipt as exc:
            self.answer_error(400, f"malformed receipt: {exc}")
            return
        await receipts.apply(parsed, channel_hint="voice" if kind.endswith("voice") else "sms")
        if kind == "aliyun/sms":
            self.succeed(json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False))
        elif kind == "ronglian/voice" or self.request.body.lstrip().startswith(b"<"):
            self.set_header("Content-Type", "application/xml; charset=UTF-8")
            self.succeed(XML_OK)
        else:
            self.succeed(json.dumps({"statusCode": "000000"}))

    def answer(self, status: int, payload: dict[str, object]) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, ensure_ascii=False))

    def answer_error(self, status: int, message: str) -> None:
        self.errno = str(status)
        self.answer(status, {"error": message})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if is_storage_failure(exc):
            # A 5xx makes the provider push again later, when Redis is back.
            self.answer_error(503, "temporarily unavailable")
        elif 400 <= status_code < 500:  # Tornado's own: undecodable request, 404, 405, 413
            self.answer_error(status_code, self._reason.lower())
        else:
            self.answer_error(500, "internal error")


ROUTES = [(rf"/callbacks/([^/]+)/({kind})", ReceiptCallbackHandler) for kind in PARSERS]
