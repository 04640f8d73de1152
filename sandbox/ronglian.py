"""A local Ronglian (容联云通讯) TemplateSMS simulator with an inbox and fault injection.

Run: python -m sandbox.ronglian --port 8883 [--host 127.0.0.1] [--config-json PATH]

Endpoints (the protocol's rules: ronglian_protocol.py):
  POST   /2013-12-26/Accounts/{sid}/SMS/TemplateSMS?sig=...   the real protocol
  POST   /2013-12-26/Accounts/{sid}/Calls/VoiceVerify?sig=... a voice code call, same rules
and the control API every sandbox has (sandbox/shell.py): /inbox, /faults, /callback, /healthz.
Status reports (SMSArrived) are pushed to the callback URL after each accepted message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import tornado.web

from sandbox import shell
from sandbox.ronglian_limits import RateLimiter
from sandbox.ronglian_protocol import (
    RonglianError,
    SandboxSettings,
    VoiceRequest,
    authenticate,
    format_ts,
    now_cst,
    parse_body,
    render_text,
    status_message,
    validate_body,
    validate_voice_body,
)

__all__ = ["Faults", "SandboxSettings", "SandboxState", "main", "make_app"]

log = logging.getLogger("sandbox.ronglian")

XML_CT = "application/xml;charset=utf-8"


@dataclass
class Faults(shell.Faults):
    """The shared fault setting; mode "status" answers a Ronglian statusCode."""

    status_code: str = "160038"

    def check_status_code(self) -> None:
        self.status_code = str(self.status_code)
        if len(self.status_code) != 6 or not self.status_code.isdigit():
            raise ValueError("status_code must be 6 digits")


class SandboxState(shell.SandboxState):
    """The shared state with Ronglian's frequency rules; it schedules Ronglian's receipts."""

    faults_type = Faults
    limiter: RateLimiter

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        super().__init__(settings, RateLimiter(settings))

    def schedule_call_result(self, call: VoiceRequest, call_sid: str) -> None:
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


class TemplateSMSHandler(shell.ApiHandler):
    """POST /2013-12-26/Accounts/{sid}/SMS/TemplateSMS: the simulated Ronglian endpoint."""

    state: SandboxState

    async def post(self, path_sid: str) -> None:
        await self.serve_api(path_sid)

    def answer(self, *args: str) -> None:
        try:
            self.reply(self.send(args[0]))
        except RonglianError as err:
            self.reply({"statusCode": err.code, "statusMsg": err.message})

    def answer_status(self, code: str) -> None:
        self.reply({"statusCode": code, "statusMsg": status_message(code)})

    def answer_http500(self) -> None:
        self.set_status(500)
        self.set_header("Content-Type", "text/html;charset=utf-8")
        self.finish("<html><body><h1>500 Internal Server Error</h1></body></html>")

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
        self.answered = payload["statusCode"]
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


def make_app(settings: SandboxSettings | None = None) -> tornado.web.Application:
    """Build the simulator application (state lives in app.settings["sandbox_state"])."""
    routes: list[tuple[str, type[shell.ApiHandler]]] = [
        (r"/2013-12-26/Accounts/([^/]+)/SMS/TemplateSMS", TemplateSMSHandler),
        (r"/2013-12-26/Accounts/([^/]+)/Calls/VoiceVerify", VoiceVerifyHandler),
    ]
    return shell.make_app(SandboxState(settings or SandboxSettings()), routes, log)


async def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT/SIGTERM, then shut down cleanly."""
    args, settings = shell.parse_args(argv, "Ronglian TemplateSMS sandbox", 8883, SandboxSettings)
    return await shell.serve(make_app(settings), args, log, "Ronglian")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
