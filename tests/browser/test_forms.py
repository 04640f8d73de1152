"""The shared SMS-code widget (static/js/smscode.js + templates/sms_fields.html) in Chromium:
收不到短信？接听语音验证码 after the countdown or a failed receipt, and the ALTCHA proof of work
when the server asks for it — on the SMS-login tab and 忘记密码, like on the registration page
(tests/browser/test_receipts.py, tests/browser/test_pow.py).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from services.store import keys
from tests.browser.helpers import (
    BLOCK,
    CALLBACK_TOKEN,
    FRAUD_ENV,
    add_user,
    captcha_text,
    elevate_localhost,
    freeze_clock,
    voice_call,
)


def open_sms_login(page: Page) -> None:
    page.goto("/login.html")
    page.click("#tab-sms")
    expect(page.locator("#panel-sms")).to_be_visible()


def send_sms(page: Page, redis_client, mobile: str, prefix: str = "") -> None:
    page.fill(f"#{prefix}mobile", mobile)
    page.fill(f"#{prefix}imagecode", captcha_text(page, redis_client, f"{prefix}captcha-img"))
    page.click(f"#{prefix}send-sms")
    expect(page.locator(f"#{prefix}phone-code-status")).to_contain_text(mobile[-4:])
    expect(page.locator(f"#{prefix}send-sms")).to_be_disabled()


def test_sms_login_offers_a_voice_call_after_the_countdown_that_logs_in(
    page, redis_client, sandbox, mariadb_server, fresh_mobile
):
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    freeze_clock(page)
    open_sms_login(page)
    offer = page.locator("#sms-voice-offer")
    expect(offer).to_be_hidden()
    send_sms(page, redis_client, mobile, "sms-")
    expect(offer).to_be_hidden()  # counting down: the SMS may still arrive
    page.clock.run_for(61_000)
    expect(page.locator("#sms-send-sms")).to_have_text("获取验证码")
    expect(offer).to_be_visible()
    expect(offer).to_contain_text("收不到短信？接听语音验证码")

    # The server's 60 s passed too (its clock is not the page's): skip its resend wait.
    redis_client.delete(keys.sms_guard_key(mobile))
    # Keyboard: the offer is a link, reached and pressed like any other.
    page.fill("#sms-imagecode", captcha_text(page, redis_client, "sms-captcha-img"))
    page.focus("#sms-send-voice")
    page.keyboard.press("Enter")
    expect(page.locator("#sms-phone-code-status")).to_contain_text("正在呼叫")
    expect(offer).to_be_hidden()
    call = voice_call(sandbox, mobile)

    page.fill("#sms-phonecode", call["verifyCode"])
    page.click("#sms-login-submit")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)


def test_reset_password_offers_a_voice_call_when_the_sms_failed(
    page, live_server, redis_client, sandbox, mariadb_server, fresh_mobile
):
    sandbox.set_callback(f"{live_server.base_url}/callbacks/{CALLBACK_TOKEN}/ronglian/sms")
    sandbox.set_fault(receipt="failed", receipt_times=1)
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    page.goto("/reset_password.html")
    offer = page.locator("#voice-offer")
    send_sms(page, redis_client, mobile)
    expect(offer).to_be_visible(timeout=15_000)  # the receipt said the SMS failed
    expect(page.locator("#phone-code-status")).to_have_attribute("data-delivery", "failed")

    page.fill("#imagecode", captcha_text(page, redis_client, "captcha-img"))
    page.click("#send-voice")
    expect(page.locator("#phone-code-status")).to_contain_text("正在呼叫")
    assert voice_call(sandbox, mobile)["verifyCode"]


@pytest.mark.parametrize("server_env", [FRAUD_ENV])
def test_sms_login_solves_proof_of_work_when_segment_is_elevated(
    page, live_server, redis_client, sandbox, mariadb_server, server_env
):
    elevate_localhost(live_server, redis_client)
    mobile = f"{BLOCK}1234"
    add_user(mariadb_server, redis_client, mobile)
    bodies = []
    page.on(
        "request",
        lambda request: (
            request.url.endswith("/api/v1.0/sms_codes") and bodies.append(request.post_data_json)
        ),
    )
    open_sms_login(page)
    send_sms(page, redis_client, mobile, "sms-")
    # Asked once without, then once with the solved proof of work, same CAPTCHA and purpose.
    assert len(bodies) == 2, bodies
    first, second = bodies
    assert "altcha" not in first and second["altcha"]
    assert first["image_code_id"] == second["image_code_id"]
    assert second["purpose"] == "login"
    expect(page.locator("#sms-pow-box")).to_be_hidden()

    page.fill("#sms-phonecode", sandbox.inbox(mobile)[-1]["datas"][0])
    page.click("#sms-login-submit")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
