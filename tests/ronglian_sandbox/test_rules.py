"""The Ronglian sandbox's protocol rules as plain functions (sandbox/ronglian_protocol.py,
sandbox/ronglian_limits.py): signatures, Authorization, templates, limits, settings. The same
rules over HTTP, against the official SDK: test_protocol.py and test_limits_and_faults.py."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from sandbox.ronglian_limits import RateLimiter
from sandbox.ronglian_protocol import (
    CST,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    RonglianError,
    SandboxSettings,
    Template,
    build_authorization,
    compute_sig,
    parse_authorization,
    render_text,
)

MOBILE = "13800000000"


def test_sig_and_authorization_synthetic_vector() -> None:
    sid, token, ts = "a" * 32, "b" * 32, "20240101120000"
    assert compute_sig(sid, token, ts) == "86C6537E6375030FC85A8D1457A177EE"
    auth = build_authorization(sid, ts)
    assert auth == "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE6MjAyNDAxMDExMjAwMDA="
    assert parse_authorization(auth) == (sid, ts)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "111101"),
        ("", "111101"),
        ("***", "111102"),
        ("bm9jb2xvbg==", "111103"),  # "nocolon"
        ("OjIwMjQwMTAxMTIwMDAw", "111104"),  # ":20240101120000"
        ("YWJjOg==", "111105"),  # "abc:"
        ("YWJjOjIwMjQxMzAxMTIwMDAw", "111113"),  # "abc:20241301120000" (month 13)
        ("YWJjOjEyMzQ=", "111113"),  # "abc:1234"
    ],
)
def test_parse_authorization_errors(header: str | None, code: str) -> None:
    with pytest.raises(RonglianError) as info:
        parse_authorization(header)
    assert info.value.code == code
    assert info.value.message


def test_render_text_fills_placeholders_positionally() -> None:
    assert render_text("码{1}，{2}分钟", ["123456", 5]) == "码123456，5分钟"
    assert render_text("码{1}，{2}分钟", ["1"]) == "码1，{2}分钟"


def test_rate_limiter_rules_and_day_rollover() -> None:
    settings = SandboxSettings(
        templates={"1": Template("{1}"), "2": Template("{1}"), "9": Template("{1}", "notification")}
    )
    limiter = RateLimiter(settings)
    day = datetime(2024, 1, 1, 8, 0, tzinfo=CST).timestamp()
    for i in range(5):
        now = day + 31 * i
        assert limiter.check("1", [MOBILE], now) is None
        limiter.record("1", [MOBILE], now)
    assert limiter.check("1", [MOBILE], day + 31 * 4 + 1) == "160038"
    assert limiter.check("1", [MOBILE], day + 1000) == "160040"
    for i in range(3):  # three more on another verification template: 8 in total
        limiter.record("2", [MOBILE], day + 2000 + 31 * i)
    assert limiter.check("2", [MOBILE], day + 3000) == "160040"
    # Notification templates only have their own 20/day cap.
    for _ in range(20):
        assert limiter.check("9", [MOBILE], day + 4000) is None
        limiter.record("9", [MOBILE], day + 4000)
    assert limiter.check("9", [MOBILE], day + 4000) == "160041"
    # A new CST day resets the daily counters.
    assert limiter.check("1", [MOBILE], day + 86400) is None


def test_rate_limits_can_be_disabled() -> None:
    limiter = RateLimiter(SandboxSettings(rate_limits=False))
    for _ in range(20):
        assert limiter.check("1", [MOBILE], 1000.0) is None
        limiter.record("1", [MOBILE], 1000.0)


def test_settings_from_json_file(tmp_path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"templates": {"7": {"text": "x{1}", "kind": "notification"}}}))
    settings = SandboxSettings.from_json_file(str(path))
    assert settings.templates == {"7": Template("x{1}", "notification")}
    assert settings.accounts == {DEFAULT_ACCOUNT_SID: DEFAULT_AUTH_TOKEN}
    path.write_text(json.dumps({"rate_limit": False}))
    with pytest.raises(ValueError, match="rate_limit"):
        SandboxSettings.from_json_file(str(path))
