"""The Ronglian TemplateSMS sandbox over HTTP: the official SDK against it, authentication,
headers and body checks (the rules as plain functions: test_rules.py; rate limits and
faults: test_limits_and_faults.py)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sandbox.ronglian_protocol import (
    CST,
    build_authorization,
    compute_sig,
    format_ts,
)
from tests.ronglian_sandbox.helpers import (
    APP_ID,
    MOBILE,
    OTHER_APP,
    SID,
    TOKEN,
    WHITELISTED,
    body,
    code_of,
    post,
    sdk,
    send,
)
from tests.sandbox_helpers import SandboxProcess

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
