"""A local Aliyun SMS (dysmsapi 2017-05-25) simulator: SendSms, an inbox, receipts, faults.

Run: python -m sandbox.aliyun --port 8884 [--host 127.0.0.1] [--config-json PATH]

Endpoints:
  POST/GET /             the API (SendSms), signed with V3 (ACS3-HMAC-SHA256) or V2 (HMAC-SHA1)
  GET    /inbox[?mobile=...]   accepted messages, oldest first ("channel": "sms")
  DELETE /inbox                clears the inbox, the flow-control counters and the nonces
  GET/PUT/DELETE /faults       fault injection for the next API requests and receipts
  GET    /healthz
If `report_url` is set, each accepted message is followed by an SmsReport push (a JSON array)
to it, after a short random delay; /faults can make it report failure, come late, twice or never.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import random
import secrets
import signal
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import tornado.httpserver
import tornado.web

from sandbox.aliyun_protocol import (
    AliyunError,
    AliyunSettings,
    NonceRegistry,
    NumberLimiter,
    SignedRequest,
    authenticate,
    render,
    validate_send_sms,
)
from sandbox.receipts import RECEIPT_MODES, CallbackHandler, ReceiptPusher

log = logging.getLogger("sandbox.aliyun")

JSON_CT = "application/json;charset=utf-8"
FAULT_MODES = ("ok", "hang", "http500", "garbage", "status", "close")
CHINA = timezone(timedelta(hours=8))


@dataclass
class Faults:
    """Fault injection: `mode`/`times` for API calls, `receipt`/`receipt_times` for receipts."""

    latency_ms: int = 0
    mode: str = "ok"
    status_code: str = "isv.OUT_OF_SERVICE"
    times: int | None = None
    receipt: str = "delivered"
    receipt_times: int | None = None
    late_ms: int = 3000

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        names = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) - names:
            raise ValueError(f"expected an object with keys among {sorted(names)}")
        faults = cls(**data)
        if not isinstance(faults.latency_ms, int) or faults.latency_ms < 0:
            raise ValueError("latency_ms must be a non-negative integer")
        if faults.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        if faults.receipt not in RECEIPT_MODES:
            raise ValueError(f"receipt must be one of {RECEIPT_MODES}")
        if not isinstance(faults.status_code, str) or not faults.status_code:
            raise ValueError("status_code must be an Aliyun error code such as isv.OUT_OF_SERVICE")
        for name in ("times", "receipt_times"):
            value = getattr(faults, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or null")
        if not isinstance(faults.late_ms, int) or faults.late_ms < 0:
            raise ValueError("late_ms must be a non-negative integer")
        return faults

    def take(self) -> str:
        mode = self.mode
        if mode != "ok" and self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.mode, self.times = "ok", None
        return mode

    def take_receipt(self) -> str:
        mode = self.receipt
        if mode != "delivered" and self.receipt_times is not None:
            self.receipt_times -= 1
            if self.receipt_times <= 0:
                self.receipt, self.receipt_times = "delivered", None
        return mode


class SandboxState:
    def __init__(self, settings: AliyunSettings) -> None:
        self.settings = settings
        self.faults = Faults()
        self.nonces = NonceRegistry()
        self.limiter = NumberLimiter(settings)
        self.inbox: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=settings.inbox_limit
        )
        self.pusher = ReceiptPusher(settings.report_delay_ms)
        self.pusher.url = settings.report_url

    def schedule_report(self, number: str, biz_id: str, out_id: str, send_time: str) -> None:
        """An SmsReport push (a JSON array of one report) for one accepted message."""

        def build(delivered: bool) -> tuple[bytes, str]:
            report = {
                "phone_number": number,
                "send_time": send_time,
                "report_time": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                "success": delivered,
                "err_code": "DELIVERED" if delivered else "UNDELIV",
                "err_msg": "用户接收成功" if delivered else "用户未接收",
                "sms_size": "1",
                "biz_id": biz_id,
                "out_id": out_id,
            }
            return json.dumps([report], ensure_ascii=False).encode(), "application/json"

        self.pusher.schedule(self.faults.take_receipt(), self.faults.late_ms, build)


class BaseHandler(tornado.web.RequestHandler):
    aliyun_code: str | None = None

    def initialize(self, state: SandboxState) -> None:
        self.state = state

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", JSON_CT)
        self.finish(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))

    def check_xsrf_cookie(self) -> None:  # an API, not a browser form
        pass


class ApiHandler(BaseHandler):
    """POST (or GET) / : the simulated dysmsapi endpoint."""

    def prepare(self) -> None:
        self._closed = asyncio.Event()

    def on_connection_close(self) -> None:
        self._closed.set()

    async def _wait_or_closed(self, seconds: float | None) -> bool:
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def get(self) -> None:
        await self.post()

    async def post(self) -> None:
        faults = self.state.faults
        mode = faults.take()
        if mode not in ("ok", "status"):
            self.aliyun_code = f"fault:{mode}"
        if faults.latency_ms and await self._wait_or_closed(faults.latency_ms / 1000):
            self.aliyun_code = "client-gone"
            return
        if mode == "hang":
            await self._wait_or_closed(None)
        elif mode == "close":
            self.request.connection.close()
        elif mode == "http500":
            self.write_json(
                {"RequestId": _request_id(), "Code": "ServiceUnavailable",
                 "Message": "The request has failed due to a temporary failure of the server."},
                status=500,
            )  # fmt: skip
        elif mode == "garbage":
            self.set_header("Content-Type", "text/html;charset=utf-8")
            self.finish("<html>oops")
        elif mode == "status":
            self.reply_error(AliyunError(faults.status_code))
        else:
            try:
                self.reply(self.handle_api())
            except AliyunError as err:
                self.reply_error(err)

    def handle_api(self) -> dict[str, Any]:
        request = self.request
        signed = SignedRequest(
            method=request.method or "POST",
            path=request.path,
            query={k: v[0].decode("utf-8") for k, v in request.query_arguments.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.body,
            form={k: v[0].decode("utf-8") for k, v in request.body_arguments.items()},
        )
        now = datetime.now(UTC)
        _key_id, action, params = authenticate(signed, self.state.settings, self.state.nonces, now)
        if action != "SendSms":
            raise AliyunError("InvalidAction.NotFound")
        sms = validate_send_sms(params, self.state.settings)
        received_at = time.time()
        self.state.limiter.check_and_record(sms.numbers, sms.sign_name, received_at)
        biz_id = f"{random.randrange(10**17, 10**18)}^0"
        text = f"【{sms.sign_name}】" + render(
            self.state.settings.templates[sms.template_code], sms.template_param
        )
        send_time = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        for number in sms.numbers:
            self.state.inbox.append(
                {
                    "channel": "sms",
                    "to": number,
                    "PhoneNumbers": params["PhoneNumbers"],
                    "SignName": sms.sign_name,
                    "TemplateCode": sms.template_code,
                    "TemplateParam": sms.template_param,
                    "OutId": sms.out_id,
                    "BizId": biz_id,
                    "received_at": received_at,
                    "text": text,
                }
            )
            self.state.schedule_report(number, biz_id, sms.out_id, send_time)
        return {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": _request_id()}

    def reply(self, payload: dict[str, Any]) -> None:
        self.aliyun_code = payload["Code"]
        self.write_json(payload)

    def reply_error(self, err: AliyunError) -> None:
        self.aliyun_code = err.code
        payload = {"RequestId": _request_id(), "Code": err.code, "Message": err.message}
        if err.http_status != 200:
            payload["HostId"] = self.request.host
        self.write_json(payload, status=err.http_status)


def _request_id() -> str:
    raw = secrets.token_hex(16).upper()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


class InboxHandler(BaseHandler):
    def get(self) -> None:
        mobile = self.get_query_argument("mobile", None)
        self.write_json([m for m in self.state.inbox if mobile is None or m["to"] == mobile])

    def delete(self) -> None:
        self.state.inbox.clear()
        self.state.limiter.clear()
        self.state.nonces.clear()
        self.write_json({"status": "ok"})


class FaultsHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(asdict(self.state.faults))

    def put(self) -> None:
        try:
            self.state.faults = Faults.from_json(json.loads(self.request.body or b"null"))
        except (ValueError, TypeError) as err:
            self.write_json({"error": str(err)}, status=400)
            return
        self.write_json(asdict(self.state.faults))

    def delete(self) -> None:
        self.state.faults = Faults()
        self.write_json(asdict(self.state.faults))


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"status": "ok"})


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request; never the query (signature) or headers (Authorization)."""
    request = handler.request
    log.info(
        "%s %s %d %s %.1fms",
        request.method,
        request.path,
        handler.get_status(),
        getattr(handler, "aliyun_code", None) or "-",
        1000 * request.request_time(),
    )


def make_app(settings: AliyunSettings | None = None) -> tornado.web.Application:
    state = SandboxState(settings or AliyunSettings())
    args = {"state": state}
    return tornado.web.Application(
        [
            (r"/", ApiHandler, args),
            (r"/inbox", InboxHandler, args),
            (r"/faults", FaultsHandler, args),
            (r"/callback", CallbackHandler, args),
            (r"/healthz", HealthHandler, args),
        ],
        log_function=_log_request,
        sandbox_state=state,
    )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Aliyun SMS (dysmsapi) sandbox")
    parser.add_argument("--port", type=int, default=8884)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--config-json", help="JSON file overriding AliyunSettings fields")
    parser.add_argument("--report-url", help="where to push SmsReport receipts")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = (
        AliyunSettings.from_json_file(args.config_json) if args.config_json else AliyunSettings()
    )
    if args.report_url:
        settings.report_url = args.report_url
    server = tornado.httpserver.HTTPServer(make_app(settings))
    server.listen(args.port, address=args.host)
    log.info("Aliyun sandbox listening on http://%s:%d", args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    except TimeoutError:
        log.warning("some connections did not close in time")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
