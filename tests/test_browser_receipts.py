"""The registration page follows a send's delivery receipt: 已送达, or 发送失败."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.test_browser import (  # noqa: F401 - fixtures shared with the page tests
    browser,
    browser_log,
    new_context,
    open_register,
    page,
    redis_client,
    request_sms,
)

TOKEN = "change-me-callback-token-00000000"


def test_page_shows_delivered_then_failed(page, live_server, redis_client, sandbox, fresh_mobile):  # noqa: F811
    sandbox.set_callback(f"{live_server.base_url}/callbacks/{TOKEN}/ronglian/sms")
    open_register(page)
    request_sms(page, redis_client, fresh_mobile())
    status = page.locator("#phone-code-status")
    expect(status).to_contain_text("已送达", timeout=15_000)
    expect(status).to_have_attribute("data-delivery", "delivered")

    sandbox.set_fault(receipt="failed", receipt_times=1)
    page.reload()
    open_register(page)
    request_sms(page, redis_client, fresh_mobile())
    expect(status).to_contain_text("发送失败", timeout=15_000)
    expect(status).to_have_attribute("data-delivery", "failed")
