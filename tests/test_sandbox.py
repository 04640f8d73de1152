"""Tests of the Ronglian TemplateSMS sandbox: protocol checks, inbox, rate limits, faults."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from ronglian_sms_sdk import SmsSDK

from sandbox.protocol import (
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


@pytest.fixture(scope="module")
def sandbox_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with SandboxProcess(tmpdir=str(tmp_path_factory.mktemp("ronglian"))) as proc:
        yield proc


@pytest.fixture(scope="module")
def custom_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """Whitelisted test numbers, no 30 s interval, a second account and extra templates."""
    tmpdir = str(tmp_path_factory.mktemp("ronglian-custom"))
    with SandboxProcess(config=CUSTOM_CONFIG, tmpdir=tmpdir) as proc:
        yield proc


@pytest.fixture
def sb(sandbox_proc: SandboxProcess) -> SandboxProcess:
    """The default-config sandbox with an empty inbox, fresh rate limits and no faults."""
    sandbox_proc.clear()
    sandbox_proc.reset_faults()
    return sandbox_proc


@pytest.fixture
def custom(custom_proc: SandboxProcess) -> SandboxProcess:
    custom_proc.clear()
    custom_proc.reset_faults()
    return custom_proc


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


# --- the official SDK against the sandbox ------------------------------------------------------


def test_official_sdk_send_lands_in_inbox(sb: SandboxProcess) -> None:
    result = json.loads(sdk(sb).sendMessage("1", MOBILE, ("123456", 5)))
    assert result["statusCode"] == "000000"
    assert "statusMsg" not in result
    sms = result["templateSMS"]
    assert re.fullmatch(r"[0-9a-f]{32}", sms["smsMessageSid"])
    assert re.fullmatch(r"\d{14}", sms["dateCreated"])

    [message] = sb.inbox()
    assert message["to"] == MOBILE
    assert message["templateId"] == "1"
    assert message["datas"] == ["123456", 5]
    assert message["smsMessageSid"] == sms["smsMessageSid"]
    assert message["dateCreated"] == sms["dateCreated"]
    assert abs(message["received_at"] - time.time()) < 60
    assert "123456" in message["text"]
    assert "5分钟" in message["text"]
    assert sb.inbox(mobile=MOBILE) == [message]
    assert sb.inbox(mobile="13800000001") == []


@pytest.mark.parametrize(
    ("kwargs", "template", "mobile", "code"),
    [
        ({"token": "f" * 32}, "1", MOBILE, "111109"),
        ({"app_id": "f" * 32}, "1", MOBILE, "111181"),
        ({"sid": "f" * 32}, "1", MOBILE, "111141"),
        ({}, "999", MOBILE, "112311"),
        ({}, "1", "12345", "160042"),
        ({}, "1", "23800000000", "160042"),
    ],
)
def test_official_sdk_errors(
    sb: SandboxProcess, kwargs: dict, template: str, mobile: str, code: str
) -> None:
    result = json.loads(sdk(sb, **kwargs).sendMessage(template, mobile, ("123456", 5)))
    assert result["statusCode"] == code
    assert result["statusMsg"]
    assert sb.inbox() == []


# --- authentication ----------------------------------------------------------------------------


def test_missing_authorization_and_sig(sb: SandboxProcess) -> None:
    assert code_of(sb, headers={"Authorization": None}) == "111101"
    assert code_of(sb, sig="") == "111108"


def test_sid_mismatch_and_bad_sig(sb: SandboxProcess) -> None:
    ts = format_ts(datetime.now(CST))
    assert code_of(sb, authorization=build_authorization("f" * 32, ts), ts=ts) == "111107"
    assert code_of(sb, sig="0" * 32) == "111109"


def test_lower_case_sig_is_accepted(sb: SandboxProcess) -> None:
    ts = format_ts(datetime.now(CST))
    assert code_of(sb, ts=ts, sig=compute_sig(SID, TOKEN, ts).lower()) == "000000"


@pytest.mark.parametrize(
    ("delta", "code"),
    [
        (timedelta(hours=-25), "111106"),
        (timedelta(hours=25), "111106"),
        (timedelta(hours=-23), "000000"),
    ],
)
def test_timestamp_window(sb: SandboxProcess, delta: timedelta, code: str) -> None:
    ts = format_ts(datetime.now(CST) + delta)
    assert code_of(sb, ts=ts) == code


def test_utc_local_timestamp_is_accepted(sb: SandboxProcess) -> None:
    """SDKs send local time; a UTC host is 8 h behind CST, which is inside the window."""
    ts = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    assert code_of(sb, ts=ts) == "000000"


# --- headers and body --------------------------------------------------------------------------


def test_header_and_body_presence(sb: SandboxProcess) -> None:
    assert code_of(sb, headers={"Accept": None}) == "112610"
    assert code_of(sb, headers={"Content-Type": None}) == "112611"
    assert code_of(sb, data=b"") == "160030"
    chunks = iter([json.dumps(body()).encode()])
    assert code_of(sb, data=chunks) == "112609"  # requests streams an iterator as chunked
    assert code_of(sb, data=b"{not json") == "112616"
    assert code_of(sb, data=b"[1, 2]") == "160031"
    assert sb.inbox() == []


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"to": MOBILE, "templateId": "1", "datas": ["1"]}, "111169"),
        (body(appId="f" * 32), "111181"),
        ({"appId": APP_ID, "templateId": "1", "datas": ["1"]}, "112306"),
        (body(to=""), "112306"),
        (body(to=",".join(f"138{i:08d}" for i in range(201))), "160048"),
        (body(to=f"{MOBILE},1380000000"), "160042"),
        (body(to=f"{MOBILE},{MOBILE}"), "160045"),
        (body(template=""), "112307"),
        ({"to": MOBILE, "appId": APP_ID, "datas": ["1"]}, "112307"),
        (body(template="2"), "112311"),
        (body(datas=("abc", "5")), "160069"),
        (body(datas=({"x": 1},)), "160052"),
    ],
)
def test_body_validation(sb: SandboxProcess, payload: dict, code: str) -> None:
    assert code_of(sb, payload) == code
    assert sb.inbox() == []


def test_app_of_another_account(custom: SandboxProcess) -> None:
    assert code_of(custom, body(to=WHITELISTED[0]) | {"appId": OTHER_APP}) == "111182"


def test_integer_template_id_number_datas_and_multiple_recipients(sb: SandboxProcess) -> None:
    to = [MOBILE, "13800000001", "19912345678"]
    result = send(sb, body(to=",".join(to), template=1, datas=(654321, 5.0)))
    assert result["statusCode"] == "000000"
    messages = sb.inbox()
    assert [m["to"] for m in messages] == to
    assert {m["smsMessageSid"] for m in messages} == {result["templateSMS"]["smsMessageSid"]}
    assert all(m["templateId"] == "1" and m["datas"] == [654321, 5.0] for m in messages)
    assert [m["to"] for m in sb.inbox(mobile="19912345678")] == ["19912345678"]


def test_xml_accept_and_legacy_xml_body(sb: SandboxProcess) -> None:
    xml_body = (
        '<?xml version="1.0" encoding="utf-8"?><SubAccount><datas><data>123456</data>'
        f"<data>5</data></datas><to>{MOBILE}</to><templateId>1</templateId>"
        f"<appId>{APP_ID}</appId>  </SubAccount>  "
    )
    headers = {"Accept": "application/xml", "Content-Type": "application/xml;charset=utf-8"}
    resp = post(sb, data=xml_body.encode(), headers=headers)
    assert resp.headers["Content-Type"] == "application/xml;charset=utf-8"
    assert "<statusCode>000000</statusCode><TemplateSMS><smsMessageSid>" in resp.text
    assert sb.inbox()[0]["datas"] == ["123456", "5"]
    resp = post(sb, data=xml_body.encode(), headers=headers)  # within 30 s
    assert "<statusCode>160038</statusCode><statusMsg>" in resp.text


def test_unknown_path_and_method(sb: SandboxProcess) -> None:
    assert requests.get(f"{sb.base_url}/nope", timeout=5).status_code == 404
    url = f"{sb.base_url}/2013-12-26/Accounts/{SID}/SMS/TemplateSMS"
    assert requests.get(url, timeout=5).status_code == 405
    assert requests.get(f"{sb.base_url}/healthz", timeout=5).json() == {"status": "ok"}


# --- rate limits and whitelist -----------------------------------------------------------------


def test_same_number_within_interval_then_clear(sb: SandboxProcess) -> None:
    client = sdk(sb)
    assert json.loads(client.sendMessage("1", MOBILE, ("1", 5)))["statusCode"] == "000000"
    second = json.loads(client.sendMessage("1", MOBILE, ("2", 5)))
    assert second == {"statusCode": "160038", "statusMsg": "短信验证码发送过频繁"}
    assert code_of(sb, body(to="13800000001")) == "000000"  # other numbers are unaffected
    assert len(sb.inbox()) == 2
    sb.clear()  # also resets the rate-limit counters
    assert json.loads(client.sendMessage("1", MOBILE, ("3", 5)))["statusCode"] == "000000"


def test_daily_caps(custom: SandboxProcess) -> None:
    number = WHITELISTED[0]
    codes = [code_of(custom, body(to=number)) for _ in range(6)]
    assert codes == ["000000"] * 5 + ["160040"]
    codes = [code_of(custom, body(to=number, template="3", datas=("x",))) for _ in range(4)]
    assert codes == ["000000"] * 3 + ["160040"]  # 8 per number per day across templates
    assert len(custom.inbox(mobile=number)) == 8


def test_whitelist(custom: SandboxProcess) -> None:
    assert code_of(custom, body(to=MOBILE)) == "112310"
    assert code_of(custom, body(to=f"{WHITELISTED[0]},{MOBILE}")) == "112310"
    assert code_of(custom, body(to=",".join(WHITELISTED))) == "000000"
    assert [m["to"] for m in custom.inbox()] == WHITELISTED


# --- fault injection ---------------------------------------------------------------------------


def test_fault_latency(sb: SandboxProcess) -> None:
    sb.set_fault(latency_ms=400)
    started = time.monotonic()
    assert code_of(sb) == "000000"
    assert time.monotonic() - started >= 0.4
    assert len(sb.inbox()) == 1  # latency alone is not a fault: the message is delivered


def test_fault_hang(sb: SandboxProcess) -> None:
    sb.set_fault(mode="hang")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(sb, timeout=1)
    assert time.monotonic() - started < 3
    sb.reset_faults()
    assert sb.inbox() == []
    assert code_of(sb) == "000000"  # the sandbox is still responsive


def test_fault_http500(sb: SandboxProcess) -> None:
    sb.set_fault(mode="http500")
    resp = post(sb)
    assert resp.status_code == 500
    assert "<html>" in resp.text
    assert json.loads(sdk(sb).sendMessage("1", MOBILE, ("1", 5))) == {"statusCode": "500"}
    assert sb.inbox() == []


def test_fault_garbage(sb: SandboxProcess) -> None:
    sb.set_fault(mode="garbage")
    resp = post(sb)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    assert sb.inbox() == []


def test_fault_status(sb: SandboxProcess) -> None:
    sb.set_fault(mode="status", status_code="111142")
    assert send(sb) == {"statusCode": "111142", "statusMsg": "【账号】主账户余额不足"}
    sb.set_fault(mode="status")
    assert code_of(sb) == "160038"
    assert sb.inbox() == []


def test_fault_close(sb: SandboxProcess) -> None:
    sb.set_fault(mode="close")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(sb)
    assert sb.inbox() == []


def test_fault_times_reverts_to_ok(sb: SandboxProcess) -> None:
    sb.set_fault(mode="status", status_code="160040", times=2)
    assert sb.faults()["times"] == 2
    assert code_of(sb) == "160040"
    assert sb.faults()["times"] == 1
    assert code_of(sb) == "160040"
    faults = sb.faults()
    assert {k: faults[k] for k in ("latency_ms", "mode", "status_code", "times")} == {
        "latency_ms": 0,
        "mode": "ok",
        "status_code": "160040",
        "times": None,
    }
    assert code_of(sb) == "000000"
    assert len(sb.inbox()) == 1  # faulted sends neither land in the inbox nor count for limits


def test_invalid_fault_is_rejected(sb: SandboxProcess) -> None:
    with pytest.raises(RuntimeError, match="HTTP 400"):
        sb.set_fault(mode="explode")
    with pytest.raises(RuntimeError, match="HTTP 400"):
        sb.set_fault(latency="100")
    assert sb.faults()["mode"] == "ok"
