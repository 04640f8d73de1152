"""A local Ronglian (容联云通讯) TemplateSMS simulator with an inbox and fault injection.

Run: python -m sandbox.ronglian --port 8883 [--host 127.0.0.1] [--config-json PATH]

Endpoints:
  POST   /2013-12-26/Accounts/{sid}/SMS/TemplateSMS?sig=...   the real protocol (see protocol.py)
  POST   /2013-12-26/Accounts/{sid}/Calls/VoiceVerify?sig=... a voice code call, same rules
  GET    /inbox[?mobile=...]   accepted messages, oldest first
  DELETE /inbox                clears the inbox and the rate-limit counters
  GET/PUT/DELETE /faults       fault injection for the next TemplateSMS requests and receipts
  GET/PUT        /callback     where status reports (SMSArrived) are pushed: {"url": ...}
  GET    /healthz
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from xml.sax.saxutils import escape

import tornado.httpserver
import tornado.web

from sandbox.protocol import (
    RateLimiter,
    RonglianError,
    SandboxSettings,
    authenticate,
    format_ts,
    now_cst,
    parse_body,
    render_text,
    status_message,
    validate_body,
    validate_voice_body,
)
from sandbox.receipts import RECEIPT_MODES, CallbackHandler, ReceiptPusher

__all__ = ["Faults", "SandboxSettings", "SandboxState", "main", "make_app"]

log = logging.getLogger("sandbox.ronglian")

JSON_CT = "application/json;charset=utf-8"
XML_CT = "application/xml;charset=utf-8"
FAULT_MODES = ("ok", "hang", "http500", "garbage", "status", "close")


@dataclass
class Faults:
    """Current fault-injection setting; `times` counts down the faulted requests left."""

    latency_ms: int = 0
    mode: str = "ok"
    status_code: str = "160038"
    times: int | None = None
    # Status reports pushed after an accepted message (sandbox/receipts.py).
    receipt: str = "delivered"
    receipt_times: int | None = None
    late_ms: int = 3000

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """Validate a PUT /faults body (missing keys take their defaults)."""
        names = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) - names:
            raise ValueError(f"expected an object with keys among {sorted(names)}")
        faults = cls(**data)
        if faults.receipt not in RECEIPT_MODES:
            raise ValueError(f"receipt must be one of {RECEIPT_MODES}")
        if faults.receipt_times is not None and (
            not isinstance(faults.receipt_times, int) or faults.receipt_times < 1
        ):
            raise ValueError("receipt_times must be a positive integer or null")
        if not isinstance(faults.late_ms, int) or faults.late_ms < 0:
            raise ValueError("late_ms must be a non-negative integer")
        if not isinstance(faults.latency_ms, int) or faults.latency_ms < 0:
            raise ValueError("latency_ms must be a non-negative integer")
        if faults.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        faults.status_code = str(faults.status_code)
        if len(faults.status_code) != 6 or not faults.status_code.isdigit():
            raise ValueError("status_code must be 6 digits")
        if faults.times is not None and (not isinstance(faults.times, int) or faults.times < 1):
            raise ValueError("times must be a positive integer or null")
        return faults

    def take(self) -> str:
        """Return the mode for one TemplateSMS request and consume one of `times`."""
        mode = self.mode
        if mode != "ok" and self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.mode, self.times = "ok", None
        return mode

    def take_receipt(self) -> str:
        """Return the receipt mode for one accepted message and consume one of receipt_times."""
        mode = self.receipt
        if mode != "delivered" and self.receipt_times is not None:
            self.receipt_times -= 1
            if self.receipt_times <= 0:
                self.receipt, self.receipt_times = "delivered", None
        return mode


class SandboxState:
    """Mutable simulator state shared by all handlers."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.faults = Faults()
        self.limiter = RateLimiter(settings)
        # Bounded so a long benchmark cannot exhaust memory; old messages fall off the front.
        self.inbox: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=settings.inbox_limit
        )
        self.pusher = ReceiptPusher(settings.report_delay_ms)
        self.pusher.url = settings.report_url

    def schedule_call_result(self, call: Any, call_sid: str) -> None:
        """The VoiceCode notification (XML) to the call's respUrl once the call "ends"."""
        if not call.resp_url:
            return

        def build(answered: bool) -> tuple[bytes, str]:
            user_data = f"<userData>{escape(call.user_data)}</userData>" if call.user_data else ""
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?><Request><action>VoiceCode</action>'
                f"<number>{call.to}</number><callSid>{call_sid}</callSid>"
                f"<state>{0 if answered else 1}</state><duration>{12 if answered else 0}</duration>"
                f"{user_data}</Request>"
            )
            return xml.encode(), "text/plain"

        self.pusher.schedule(
            self.faults.take_receipt(), self.faults.late_ms, build, url=call.resp_url
        )

    def schedule_report(self, number: str, message_sid: str, date_sent: str) -> None:
        """A status report push (action SMSArrived, JSON) for one accepted message."""

        def build(delivered: bool) -> tuple[bytes, str]:
            report = {
                "action": "SMSArrived",
                "smsType": "1",
                "apiVersion": "2013-12-26",
                "content": message_sid,
                "fromNum": number,
                "dateSent": date_sent,
                "deliverCode": "DELIVRD" if delivered else "UNDELIV",
                "recvTime": format_ts(now_cst()),
                "status": "0" if delivered else "1",
                "reqId": "",
                "smsCount": "1",
            }
            return json.dumps({"Request": report}).encode(), "application/json;charset=utf-8"

        self.pusher.schedule(self.faults.take_receipt(), self.faults.late_ms, build)


class BaseHandler(tornado.web.RequestHandler):
    """Common helpers: shared state and JSON output."""

    ronglian_status: str | None = None  # statusCode we answered, for the access log

    def initialize(self, state: SandboxState) -> None:
        self.state = state

    def write_json(self, payload: Any, status: int = 200) -> None:
        """Write any JSON value (Tornado's write() refuses top-level lists)."""
        self.set_status(status)
        self.set_header("Content-Type", JSON_CT)
        self.finish(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


class TemplateSMSHandler(BaseHandler):
    """POST /2013-12-26/Accounts/{sid}/SMS/TemplateSMS: the simulated Ronglian endpoint."""

    def prepare(self) -> None:
        self._closed = asyncio.Event()

    def on_connection_close(self) -> None:
        # Wakes any latency/hang wait so abandoned requests do not linger.
        self._closed.set()

    async def _wait_or_closed(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: forever) without blocking the loop; True if the client left."""
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def post(self, path_sid: str) -> None:
        """Apply latency and the fault mode first, then the real protocol."""
        faults = self.state.faults
        mode = faults.take()
        if mode not in ("ok", "status"):
            self.ronglian_status = f"fault:{mode}"
        if faults.latency_ms and await self._wait_or_closed(faults.latency_ms / 1000):
            self.ronglian_status = "client-gone"
            return
        if mode == "hang":
            await self._wait_or_closed(None)
        elif mode == "close":
            self.request.connection.close()
        elif mode == "http500":
            self.set_status(500)
            self.set_header("Content-Type", "text/html;charset=utf-8")
            self.finish("<html><body><h1>500 Internal Server Error</h1></body></html>")
        elif mode == "garbage":
            self.set_header("Content-Type", "text/html;charset=utf-8")
            self.finish("<html>oops")
        elif mode == "status":
            self.reply(
                {"statusCode": faults.status_code, "statusMsg": status_message(faults.status_code)}
            )
        else:
            try:
                self.reply(self.send(path_sid))
            except RonglianError as err:
                self.reply({"statusCode": err.code, "statusMsg": err.message})

    def send(self, path_sid: str) -> dict[str, Any]:
        """Run the protocol checks in the spec's order; record and return a success response."""
        sid, body, now = self.authenticated(path_sid)
        return self.accept(sid, body, now)

    def authenticated(self, path_sid: str) -> tuple[str, dict[str, Any], Any]:
        """Headers, sig, Authorization and the body's syntax: the checks every API shares."""
        headers = self.request.headers
        if not headers.get("Accept", "").strip():
            raise RonglianError("112610")
        content_type = headers.get("Content-Type", "").strip()
        if not content_type:
            raise RonglianError("112611")
        # Tornado de-chunks bodies transparently, so look at the header instead.
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            raise RonglianError("112609")
        if not self.request.body:
            raise RonglianError("160030")
        settings = self.state.settings
        now = now_cst()
        sid = authenticate(
            path_sid,
            self.get_query_argument("sig", None),
            headers.get("Authorization"),
            settings,
            now,
        )
        return sid, parse_body(self.request.body, content_type), now

    def accept(self, sid: str, body: dict[str, Any], now: Any) -> dict[str, Any]:
        settings = self.state.settings
        sms = validate_body(body, sid, settings)
        received_at = time.time()
        limiter = self.state.limiter
        code = limiter.check(sms.template_id, sms.to, received_at)
        if code:
            raise RonglianError(code)
        limiter.record(sms.template_id, sms.to, received_at)

        message_sid, date_created = uuid.uuid4().hex, format_ts(now)
        text = render_text(settings.templates[sms.template_id].text, sms.datas)
        for number in sms.to:  # one inbox entry per recipient so ?mobile= filtering works
            self.state.schedule_report(number, message_sid, date_created)
            self.state.inbox.append(
                {
                    "channel": "sms",
                    "to": number,
                    "appId": sms.app_id,
                    "templateId": sms.template_id,
                    "datas": sms.datas,
                    "smsMessageSid": message_sid,
                    "dateCreated": date_created,
                    "received_at": received_at,
                    "text": text,
                }
            )
        return {
            "statusCode": "000000",
            "templateSMS": {"smsMessageSid": message_sid, "dateCreated": date_created},
        }

    def reply(self, payload: dict[str, Any]) -> None:
        """Answer with HTTP 200 in the format the Accept header asks for."""
        self.ronglian_status = payload["statusCode"]
        accept = self.request.headers.get("Accept", "").lower()
        if "xml" in accept and "json" not in accept:
            self.set_header("Content-Type", XML_CT)
            self.finish(_to_xml(payload))
        else:
            self.write_json(payload)


def _to_xml(payload: dict[str, Any]) -> str:
    """Render a response as the XML variant (note: TemplateSMS is capitalised in XML)."""
    parts = [f"<statusCode>{escape(payload['statusCode'])}</statusCode>"]
    if "statusMsg" in payload:
        parts.append(f"<statusMsg>{escape(payload['statusMsg'])}</statusMsg>")
    if "templateSMS" in payload:
        sms = payload["templateSMS"]
        parts.append(
            f"<TemplateSMS><smsMessageSid>{sms['smsMessageSid']}</smsMessageSid>"
            f"<dateCreated>{sms['dateCreated']}</dateCreated></TemplateSMS>"
        )
    head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    return f"{head}<Response>{''.join(parts)}</Response>"


class VoiceVerifyHandler(TemplateSMSHandler):
    """POST /2013-12-26/Accounts/{sid}/Calls/VoiceVerify: a call that reads a code out.

    The same headers, sig, Authorization and body rules as TemplateSMS; then the call is
    "placed": an inbox entry with "channel": "voice", and the call result pushed to respUrl.
    """

    def accept(self, sid: str, body: dict[str, Any], now: Any) -> dict[str, Any]:
        call = validate_voice_body(body, sid, self.state.settings)
        call_sid, date_created = uuid.uuid4().hex, now.strftime("%Y-%m-%d %H:%M:%S")
        self.state.inbox.append(
            {
                "channel": "voice",
                "to": call.to,
                "appId": call.app_id,
                "verifyCode": call.verify_code,
                "playTimes": call.play_times,
                "displayNum": call.display_num,
                "respUrl": call.resp_url,
                "lang": call.lang,
                "userData": call.user_data,
                "callSid": call_sid,
                "dateCreated": date_created,
                "received_at": time.time(),
            }
        )
        self.state.schedule_call_result(call, call_sid)
        return {
            "statusCode": "000000",
            "VoiceVerify": {"callSid": call_sid, "dateCreated": date_created},
        }


class InboxHandler(BaseHandler):
    """GET /inbox[?mobile=] lists accepted messages; DELETE clears them and the rate limits."""

    def get(self) -> None:
        mobile = self.get_query_argument("mobile", None)
        messages = [m for m in self.state.inbox if mobile is None or m["to"] == mobile]
        self.write_json(messages)

    def delete(self) -> None:
        self.state.inbox.clear()
        self.state.limiter.clear()
        self.write_json({"status": "ok"})


class FaultsHandler(BaseHandler):
    """GET/PUT/DELETE /faults: inspect, replace or reset the fault-injection setting."""

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
    """GET /healthz."""

    def get(self) -> None:
        self.write_json({"status": "ok"})


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """One access-log line per request; the query (sig) and headers (auth) are never logged."""
    request = handler.request
    code = getattr(handler, "ronglian_status", None) or "-"
    log.info(
        "%s %s %d %s %.1fms",
        request.method,
        request.path,
        handler.get_status(),
        code,
        1000 * request.request_time(),
    )


def make_app(settings: SandboxSettings | None = None) -> tornado.web.Application:
    """Build the simulator application (state lives in app.settings["sandbox_state"])."""
    state = SandboxState(settings or SandboxSettings())
    args = {"state": state}
    return tornado.web.Application(
        [
            (r"/2013-12-26/Accounts/([^/]+)/SMS/TemplateSMS", TemplateSMSHandler, args),
            (r"/2013-12-26/Accounts/([^/]+)/Calls/VoiceVerify", VoiceVerifyHandler, args),
            (r"/inbox", InboxHandler, args),
            (r"/faults", FaultsHandler, args),
            (r"/callback", CallbackHandler, args),
            (r"/healthz", HealthHandler, args),
        ],
        log_function=_log_request,
        sandbox_state=state,
    )


async def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT/SIGTERM, then shut down cleanly."""
    parser = argparse.ArgumentParser(description="Ronglian TemplateSMS sandbox")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--config-json", help="JSON file overriding SandboxSettings fields")
    parser.add_argument("--report-url", help="where to push status reports (SMSArrived)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    settings = SandboxSettings.from_json_file(args.config_json) if args.config_json else None
    if args.report_url:
        settings = settings or SandboxSettings()
        settings.report_url = args.report_url
    server = tornado.httpserver.HTTPServer(make_app(settings))
    server.listen(args.port, address=args.host)
    log.info("Ronglian sandbox listening on http://%s:%d", args.host, args.port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("shutting down")
    server.stop()
    try:
        # Closing connections also releases requests held by the "hang" fault.
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    except TimeoutError:
        log.warning("some connections did not close in time")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
