"""The Ronglian sandbox's rate limits, whitelist and fault injection."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.ronglian_sandbox.helpers import (
    MOBILE,
    WHITELISTED,
    body,
    code_of,
    post,
    sdk,
    send,
)
from tests.sandbox_helpers import SandboxProcess

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
