"""A local Aliyun SMS (dysmsapi 2017-05-25) simulator: SendSms, an inbox, receipts, faults.

Run: python -m sandbox.aliyun --port 8884 [--host 127.0.0.1] [--config-json PATH]

Endpoints:
  POST/GET /             the API (SendSms), signed with V3 (ACS3-HMAC-SHA256) or V2 (HMAC-SHA1)
and the control API every sandbox has (sandbox/shell.py): /inbox ("channel": "sms"; DELETE
also forgets the flow-control counters and the nonces), /faults, /callback, /healthz.
If `report_url` is set, each accepted message is followed by an SmsReport push (a JSON array)
to it, after a short random delay; /faults can make it report failure, come late, twice or never.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import tornado.web

from sandbox import shell
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

log = logging.getLogger("sandbox.aliyun")

CHINA = timezone(timedelta(hours=8))


@dataclass
class Faults(shell.Faults):
    """The shared fault setting; mode "status" answers an Aliyun error code."""

    status_code: str = "isv.OUT_OF_SERVICE"

    def check_status_code(self) -> None:
        if not isinstance(self.status_code, str) or not self.status_code:
            raise ValueError("status_code must be an Aliyun error code such as isv.OUT_OF_SERVICE")


class SandboxState(shell.SandboxState):
    """The shared state plus Aliyun's flow control and the nonces seen."""

    faults_type = Faults
    limiter: NumberLimiter

    def __init__(self, settings: AliyunSettings) -> None:
        self.settings = settings
        self.nonces = NonceRegistry()
        super().__init__(settings, NumberLimiter(settings))

    def clear(self) -> None:
        super().clear()
        self.nonces.clear()

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


class ApiHandler(shell.ApiHandler):
    """POST (or GET) / : the simulated dysmsapi endpoint."""

    state: SandboxState

    async def get(self) -> None:
        await self.serve_api()

    async def post(self) -> None:
        await self.serve_api()

    def answer(self, *args: str) -> None:
        try:
            self.reply(self.handle_api())
        except AliyunError as err:
            self.reply_error(err)

    def answer_status(self, code: str) -> None:
        self.reply_error(AliyunError(code))

    def answer_http500(self) -> None:
        self.write_json(
            {"RequestId": _request_id(), "Code": "ServiceUnavailable",
             "Message": "The request has failed due to a temporary failure of the server."},
            status=500,
        )  # fmt: skip

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
        self.answered = payload["Code"]
        self.write_json(payload)

    def reply_error(self, err: AliyunError) -> None:
        self.answered = err.code
        payload = {"RequestId": _request_id(), "Code": err.code, "Message": err.message}
        if err.http_status != 200:
            payload["HostId"] = self.request.host
        self.write_json(payload, status=err.http_status)


def _request_id() -> str:
    raw = secrets.token_hex(16).upper()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def make_app(settings: AliyunSettings | None = None) -> tornado.web.Application:
    state = SandboxState(settings or AliyunSettings())
    return shell.make_app(state, [(r"/", ApiHandler)], log)


async def main(argv: list[str] | None = None) -> int:
    args, settings = shell.parse_args(argv, "Aliyun SMS (dysmsapi) sandbox", 8884, AliyunSettings)
    return await shell.serve(make_app(settings), args, log, "Aliyun")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
