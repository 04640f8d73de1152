"""The registration page follows a send's delivery receipt: 已送达, or 发送失败."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.helpers import (
    CALLBACK_TOKEN,
    captcha_text,
    freeze_clock,
    open_register,
    request_sms,
    voice_call,
)


def test_page_shows_delivered_then_failed(page, live_server, redis_client, sandbox, fresh_mobile):
    sandbox.set_callback(f"{live_server.base_url}/callbacks/{CALLBACK_TOKEN}/ronglian/sms")
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


def test_failed_sms_offers_a_voice_call_that_registers(
    page,
    live_server,
    redis_client,
    sandbox,
    fresh_mobile,
):
    sandbox.set_callback(f"{live_server.base_url}/callbacks/{CALLBACK_TOKEN}/ronglian/sms")
    sandbox.set_fault(receipt="failed", receipt_times=1)
    open_register(page)
    offer = page.locator("#voice-offer")
    expect(offer).to_be_hidden()
    mobile = fresh_mobile()
    request_sms(page, redis_client, mobile)
    expect(offer).to_be_visible(timeout=15_000)  # the receipt said the SMS failed
    expect(offer).to_contain_text("收不到短信？接听语音验证码")

    page.fill("#imagecode", captcha_text(page, redis_client))
    page.click("#send-voice")
    expect(page.locator("#phone-code-status")).to_contain_text("正在呼叫")
    voice_call(sandbox, mobile)
    [call] = [m for m in sandbox.inbox(mobile) if m["channel"] == "voice"]

    page.fill("#phonecode", call["verifyCode"])
    page.fill("#password", "secret-123")
    page.fill("#password2", "secret-123")
    page.check("#agree")  # the consent (templates/consent_field.html)
    page.click("#register-submit")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)


def test_voice_offer_appears_when_the_countdown_ends(
    page,
    redis_client,
    fresh_mobile,
):
    freeze_clock(page)
    open_register(page)
    request_sms(page, redis_client, fresh_mobile())
    offer = page.locator("#voice-offer")
    expect(offer).to_be_hidden()  # counting down: the SMS may still arrive
    page.clock.run_for(61_000)
    expect(page.locator("#send-sms")).to_have_text("获取验证码")
    expect(offer).to_be_visible()
    page.fill("#mobile", fresh_mobile())  # another number: no SMS was sent to it
    expect(offer).to_be_hidden()
