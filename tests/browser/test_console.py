"""The operator console (/ops) in Chromium against server.py: an operator sees it and unblocks a
fraud segment; a logged-in non-operator and an operator outside ops.allow get the 404 of an
unknown URL.

Set UPDATE_SCREENSHOTS=1 to rewrite docs/screenshots/ops-console.png (its history is seeded
through the documented per-minute keys, so that the charts have six hours to show).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from services.store import keys
from tests.browser.helpers import DESKTOP, LAYOUT_PROBLEMS, PASSWORD, add_user
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
OPERATOR = "13900139001"
SOMEONE = "13900139002"
OPERATOR_ENV = {"SMSREG_OPS_OPERATORS": OPERATOR}
SEGMENT = "ip:203.0.113.7"


def log_in(context: BrowserContext, mobile: str) -> None:
    """Log in through the API, as the login page's script does (the page is not under test)."""
    page = context.new_page()
    page.goto("/")
    token = next(c["value"] for c in context.cookies() if c["name"] == "csrf_token")
    answer = context.request.post(
        "/api/v1.0/sessions",
        data=json.dumps({"mobile": mobile, "password": PASSWORD}),
        headers={"Content-Type": "application/json", "X-CSRFToken": token},
    ).json()
    assert answer["errno"] == "0", answer
    page.close()


def seed_history(redis_client, hours: int = 6) -> None:
    """Six hours of per-minute counts in the keys SendHistory writes (for the screenshot)."""
    now = int(time.time() // 60)
    pipe = redis_client.pipeline()
    for i in range(hours * 60):
        minute = now - hours * 60 + 1 + i
        wave = 1 + math.sin(i / 40)
        sent = int(7 + 5 * wave)
        fields = {
            "sent": sent,
            "provider_failed": int(i % 97 == 0) * 3,
            "refused": int(2 + 2 * wave) + (12 if 200 <= i < 215 else 0),
            "shed": 8 if 200 <= i < 210 else 0,
            "delivered": sent - 1 - (3 if 250 <= i < 270 else 0),
            "undelivered": 1 + (3 if 250 <= i < 270 else 0),
            "cost": sent * 500,
        }
        pipe.hset(keys.ops_minute_key(minute), mapping=fields)
        pipe.expire(keys.ops_minute_key(minute), 3600)
    pipe.execute()


def refused_like_an_unknown_url(context: BrowserContext, browser_log) -> None:
    page = context.new_page()
    unknown = page.goto("/no-such-page")
    unknown_body = unknown.body()
    response = page.goto("/ops")
    assert response.status == 404
    assert response.body() == unknown_body
    # The two 404s are what this test asks for: not errors of a page.
    browser_log.errors[:] = [e for e in browser_log.errors if "404" not in e]


@pytest.mark.parametrize("server_env", [OPERATOR_ENV])
def test_an_operator_sees_the_console_and_unblocks_a_segment(
    new_context, live_server, redis_client, mariadb_server, tmp_path
):
    add_user(mariadb_server, redis_client, OPERATOR)
    redis_client.hset(keys.fraud_state_key(SEGMENT), mapping={"state": "blocked", "level": 1})
    redis_client.hset(keys.fraud_state_key("blk:1700077"), mapping={"state": "elevated"})
    seed_history(redis_client)
    context = new_context(DESKTOP)
    log_in(context, OPERATOR)
    page = context.new_page()
    page.goto("/ops")
    expect(page.locator("h1")).to_have_text("运维控制台")
    expect(page.locator(".charts svg")).to_have_count(6)
    expect(page.locator("#breakers")).to_contain_text("ronglian")
    row = page.locator(f'tr[data-segment="{SEGMENT}"]')
    expect(row).to_contain_text("封禁")
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    out = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=out / "ops-console.png", full_page=True)

    row.get_by_role("button", name="恢复正常").click()
    expect(page.locator("#notice")).to_have_text(f"已将 {SEGMENT} 恢复为正常")
    expect(page.locator(f'tr[data-segment="{SEGMENT}"]')).to_have_count(0)
    assert not redis_client.exists(keys.fraud_state_key(SEGMENT))
    audit = wait_until(
        lambda: live_server.log_path.read_text(encoding="utf-8"),
        lambda text: f"unblocked fraud segment {SEGMENT}" in text,
        what="the unblock in the audit log",
    )
    assert "user 1 (139****9001) from 127.0.0.1" in audit
    assert OPERATOR not in audit


@pytest.mark.parametrize("server_env", [OPERATOR_ENV])
def test_a_logged_in_non_operator_is_refused(
    new_context, live_server, mariadb_server, redis_client, browser_log
):
    add_user(mariadb_server, redis_client, SOMEONE)
    context = new_context(DESKTOP)
    log_in(context, SOMEONE)
    refused_like_an_unknown_url(context, browser_log)


@pytest.mark.parametrize("server_env", [{**OPERATOR_ENV, "SMSREG_OPS_ALLOW": "192.0.2.0/24"}])
def test_an_operator_outside_the_allowed_addresses_is_refused(
    new_context, live_server, mariadb_server, redis_client, browser_log
):
    add_user(mariadb_server, redis_client, OPERATOR)
    context = new_context(DESKTOP)
    log_in(context, OPERATOR)
    refused_like_an_unknown_url(context, browser_log)
