"""Requests to the Ronglian sandbox: the official SDK, or built by hand (sig, Authorization)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import requests
from ronglian_sms_sdk import SmsSDK

from sandbox.ronglian_protocol import (
    CST,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_APP_ID,
    DEFAULT_AUTH_TOKEN,
    build_authorization,
    compute_sig,
    format_ts,
)
from tests.sandbox_helpers import SandboxProcess

SID, TOKEN, APP_ID = DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_APP_ID
MOBILE = "13800000000"
WHITELISTED = ["13900000001", "13900000002"]
OTHER_SID = "0" * 32
OTHER_TOKEN = "1" * 32
OTHER_APP = "2" * 32

CUSTOM_CONFIG = {
    "accounts": {SID: TOKEN, OTHER_SID: OTHER_TOKEN},
    "apps": {APP_ID: SID, OTHER_APP: OTHER_SID},
    "templates": {
        "1": {"text": "验证码{1}，{2}分钟有效", "kind": "verification"},
        "3": {"text": "您的验证码是{1}", "kind": "verification"},
        "9": {"text": "通知：{1}", "kind": "notification"},
    },
    "test_numbers": WHITELISTED,
    "same_number_interval": 0,
}


def sdk(sb: SandboxProcess, sid: str = SID, token: str = TOKEN, app_id: str = APP_ID) -> SmsSDK:
    """The official SDK pointed at the sandbox."""
    client = SmsSDK(sid, token, app_id)
    client.url = sb.base_url
    return client


def post(
    sb: SandboxProcess,
    body: Any = None,
    *,
    sid: str = SID,
    token: str = TOKEN,
    ts: str | None = None,
    sig: str | None = None,
    authorization: str | None = None,
    headers: dict[str, Any] | None = None,
    data: Any = None,
    timeout: float = 5,
) -> requests.Response:
    """Build a TemplateSMS request by hand (sig/Authorization from sid, token and ts)."""
    ts = ts or format_ts(datetime.now(CST))
    if body is None:
        body = {"to": MOBILE, "appId": APP_ID, "templateId": "1", "datas": ["123456", "5"]}
    all_headers: dict[str, Any] = {
        "Accept": "application/json",
        "Content-Type": "application/json;charset=utf-8",
        "Authorization": authorization
        if authorization is not None
        else build_authorization(sid, ts),
    }
    all_headers.update(headers or {})  # a None value makes requests drop the header
    query = "" if sig == "" else f"?sig={sig if sig is not None else compute_sig(sid, token, ts)}"
    url = f"{sb.base_url}/2013-12-26/Accounts/{sid}/SMS/TemplateSMS{query}"
    payload = data if data is not None else json.dumps(body).encode()
    return requests.post(url, data=payload, headers=all_headers, timeout=timeout)


def send(sb: SandboxProcess, body: Any = None, **kwargs: Any) -> dict[str, Any]:
    """post() and decode the HTTP 200 JSON answer."""
    resp = post(sb, body, **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json;charset=utf-8"
    return resp.json()


def code_of(sb: SandboxProcess, body: Any = None, **kwargs: Any) -> str:
    """Just the statusCode of a hand-built request."""
    return send(sb, body, **kwargs)["statusCode"]


def body(to: str = MOBILE, template: Any = "1", datas: Any = ("123456", "5"), **extra: Any) -> dict:
    """A TemplateSMS JSON body with overridable fields."""
    return {"to": to, "appId": APP_ID, "templateId": template, "datas": list(datas), **extra}
