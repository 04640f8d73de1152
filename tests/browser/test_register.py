"""The registration page in real headless Chromium: the whole journey, the CAPTCHA, the
countdown (on Playwright's clock), and each error shown at its field.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from services.accounts.login_throttle import account_key
from services.store import keys
from tests.browser.helpers import (
    PASSWORD,
    captcha_id,
    captcha_text,
    countdown_seconds,
    freeze_clock,
    last_sms_code,
    open_register,
    register_on_page,
    request_sms,
    wait_captcha_loaded,
)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"


# --- the whole journey ----------------------------------------------------------------------


def test_register_logout_login_journey(page, redis_client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    freeze_clock(page)
    page.goto("/")
    expect(page.locator("#guest-panel")).to_be_visible()
    page.click("#register-link")
    expect(page).to_have_url("/register.html")
    wait_captcha_loaded(page)

    request_sms(page, redis_client, mobile)
    expect(page.locator("#phone-code-status")).to_contain_text(mobile[-4:])
    assert countdown_seconds(page) == 60
    page.clock.run_for(1000)
    assert countdown_seconds(page) == 59, "the countdown must tick once a second"
    expect(page.locator("#send-sms")).to_be_disabled()

    page.fill("#phonecode", last_sms_code(sandbox, mobile))
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.check("#agree")  # the consent (templates/consent_field.html)
    page.click("#register-submit")

    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
    expect(page.locator("#guest-panel")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.getItem('ihome.smsCountdown')") is None

    page.click("#logout")
    expect(page.locator("#guest-panel")).to_be_visible()
    expect(page.locator("#user-panel")).to_be_hidden()
    page.reload()
    expect(page.locator("#guest-panel")).to_be_visible()

    page.click("#login-link")
    expect(page).to_have_url("/login.html")
    page.fill("#mobile", mobile)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)

    # Back to the login page (maybe from the back/forward cache): no stuck "登录中…" button.
    page.go_back()
    expect(page.locator("#login-submit")).to_have_text("登录")
    expect(page.locator("#login-submit")).to_be_enabled()


# --- CAPTCHA ----------------------------------------------------------------------------------


def test_wrong_captcha_shows_error_and_new_image(page, redis_client, fresh_mobile):
    open_register(page)
    page.fill("#mobile", fresh_mobile())
    old_src = page.get_attribute("#captcha-img", "src")
    page.fill("#imagecode", "0000")  # "0" is not in the CAPTCHA alphabet
    page.click("#send-sms")

    expect(page.locator("#image-code-err")).to_have_text("图片验证码错误，请重新输入")
    expect(page.locator("#imagecode")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#captcha-img")).not_to_have_attribute("src", old_src)
    expect(page.locator("#imagecode")).to_have_value("")
    expect(page.locator("#imagecode")).to_be_focused()
    expect(page.locator("#send-sms")).to_be_enabled()
    wait_captcha_loaded(page)
    assert captcha_text(page, redis_client)  # the new image has a live CAPTCHA behind it

    # Typing clears the error; an expired CAPTCHA (gone from Redis) also brings a new image.
    page.fill("#imagecode", "AAAA")
    expect(page.locator("#image-code-err")).to_have_text("")
    redis_client.delete(keys.captcha_key(captcha_id(page)))
    old_src = page.get_attribute("#captcha-img", "src")
    page.click("#send-sms")
    expect(page.locator("#image-code-err")).to_contain_text("已过期")
    expect(page.locator("#captcha-img")).not_to_have_attribute("src", old_src)


def test_click_on_image_shows_new_captcha(page):
    open_register(page)
    old_src = page.get_attribute("#captcha-img", "src")
    page.click("#captcha-img")
    expect(page.locator("#captcha-img")).not_to_have_attribute("src", old_src)
    wait_captcha_loaded(page)


def test_audio_captcha_speaks_the_same_id(page):
    open_register(page)
    image_id = captcha_id(page)
    expect(page.locator("#captcha-audio")).to_have_attribute(
        "href", f"/api/v1.0/image_codes/{image_id}/audio"
    )
    with page.expect_response(lambda r: r.url.endswith("/audio")) as answer:
        page.click("#captcha-audio")
    response = answer.value
    assert response.url.endswith(f"/api/v1.0/image_codes/{image_id}/audio")
    assert response.status in (200, 206)
    assert response.headers["content-type"].startswith("audio/wav")
    expect(page).to_have_url("/register.html")  # played in place, the form is kept
    expect(page.locator("#image-code-err")).to_have_text("")


# --- countdown ----------------------------------------------------------------------------------


def test_reload_during_countdown_keeps_counting(page, new_context, redis_client, fresh_mobile):
    mobile = fresh_mobile()
    freeze_clock(page)
    open_register(page)
    request_sms(page, redis_client, mobile)
    page.clock.run_for(3000)

    page.reload()
    wait_captcha_loaded(page)
    expect(page.locator("#mobile")).to_have_value(mobile)
    expect(page.locator("#send-sms")).to_be_disabled()
    assert countdown_seconds(page) == 57, "the reloaded page goes on from where it was"
    page.clock.run_for(1000)
    assert countdown_seconds(page) == 56

    # Another number is not held back by this number's countdown ...
    page.fill("#mobile", fresh_mobile())
    expect(page.locator("#send-sms")).to_have_text("获取验证码")
    expect(page.locator("#send-sms")).to_be_enabled()
    page.fill("#mobile", mobile)
    expect(page.locator("#send-sms")).to_be_disabled()

    # ... and a tab without the stored countdown learns the rest from the server (REQERR).
    other = new_context().new_page()
    open_register(other)
    other.fill("#mobile", mobile)
    other.fill("#imagecode", captcha_text(other, redis_client))
    other.click("#send-sms")
    expect(other.locator("#phone-code-err")).to_contain_text("请求过于频繁")
    expect(other.locator("#send-sms")).to_be_disabled()
    assert 1 <= countdown_seconds(other) <= 60  # what the server has left of the guard


def test_countdown_ends_with_the_button_back(page):
    freeze_clock(page)
    open_register(page)
    page.evaluate(
        "() => sessionStorage.setItem('ihome.smsCountdown', "
        "JSON.stringify({mobile: '13800000000', until: Date.now() + 2500}))"
    )
    page.reload()
    expect(page.locator("#mobile")).to_have_value("13800000000")
    expect(page.locator("#send-sms")).to_have_text("3秒")
    page.clock.run_for(1500)
    expect(page.locator("#send-sms")).to_have_text("1秒")
    expect(page.locator("#send-sms")).to_be_disabled()
    page.clock.run_for(1000)
    expect(page.locator("#send-sms")).to_have_text("获取验证码")
    expect(page.locator("#send-sms")).to_be_enabled()
    assert page.evaluate("() => sessionStorage.getItem('ihome.smsCountdown')") is None


# --- errors shown at their fields --------------------------------------------------------------


def test_each_field_shows_its_own_error(page, redis_client, sandbox, fresh_mobile):
    open_register(page)
    page.click("#send-sms")
    expect(page.locator("#mobile-err")).to_have_text("请输入正确的11位手机号")
    expect(page.locator("#image-code-err")).to_have_text("请输入图片验证码")
    expect(page.locator("#mobile")).to_be_focused()

    page.fill("#password", "12345")
    page.fill("#password2", "54321")
    page.click("#register-submit")
    expect(page.locator("#phone-code-err")).to_have_text("请输入6位数字短信验证码")
    expect(page.locator("#password-err")).to_have_text("密码长度应为6-64位")
    expect(page.locator("#password2-err")).to_have_text("两次密码不一致")
    for element_id in ["mobile", "phonecode", "password", "password2"]:
        expect(page.locator(f"#{element_id}")).to_have_attribute("aria-invalid", "true")
    for element_id in ["mobile-err", "image-code-err", "phone-code-err", "password-err"]:
        expect(page.locator(f"#{element_id}")).to_have_attribute("aria-live", "polite")

    # A wrong SMS code is the server's answer, shown under the SMS field.
    mobile = fresh_mobile()
    request_sms(page, redis_client, mobile)
    wrong = "000000" if last_sms_code(sandbox, mobile) != "000000" else "111111"
    page.fill("#phonecode", wrong)
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.check("#agree")  # the consent (templates/consent_field.html)
    page.click("#register-submit")
    expect(page.locator("#phone-code-err")).to_contain_text("短信验证码错误")
    expect(page.locator("#phonecode")).to_be_focused()
    expect(page).to_have_url("/register.html")


def test_registered_mobile_and_wrong_login(page, redis_client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    register_on_page(page, redis_client, sandbox, mobile)
    page.click("#logout")
    expect(page.locator("#guest-panel")).to_be_visible()

    redis_client.delete(keys.sms_guard_key(mobile))  # skip the resend wait, not the check
    page.goto("/register.html")
    wait_captcha_loaded(page)
    page.fill("#mobile", mobile)
    page.fill("#imagecode", captcha_text(page, redis_client))
    page.click("#send-sms")
    expect(page.locator("#mobile-err")).to_contain_text("已注册")
    expect(page.locator("#send-sms")).to_be_enabled()

    page.goto("/login.html")
    page.fill("#mobile", mobile)
    page.fill("#password", "wrong-password")
    page.press("#password", "Enter")
    expect(page.locator("#form-err")).to_have_text("手机号或密码错误")
    expect(page.locator("#password")).to_be_focused()
    expect(page).to_have_url("/login.html")


def test_send_with_unknown_outcome_keeps_the_countdown(page, redis_client, sandbox, fresh_mobile):
    sandbox.set_fault(mode="close", times=1)  # the request went out, no answer came back
    mobile = fresh_mobile()
    open_register(page)
    request_sms(page, redis_client, mobile)  # waits for the countdown
    expect(page.locator("#phone-code-err")).to_contain_text("短信发送结果未知")


def test_login_asks_for_a_captcha_when_the_server_does(page, redis_client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    register_on_page(page, redis_client, sandbox, mobile)
    [index] = redis_client.keys("session:{*}:index")
    user_id = int(index.split("{", 1)[1].split("}", 1)[0])
    page.click("#logout")
    expect(page.locator("#guest-panel")).to_be_visible()
    # Stand-in for 20 failed guesses on this account from 20 other addresses.
    account = keys.login_account_failures_key(account_key(user_id, mobile))
    redis_client.set(account, 20, ex=3600)

    page.goto("/login.html")
    expect(page.locator("#login-captcha")).to_be_hidden()  # not while nobody attacks
    page.fill("#mobile", mobile)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#login-captcha")).to_be_visible()
    expect(page.locator("#image-code-err")).to_have_text("请先输入图片验证码")
    expect(page.locator("#imagecode")).to_be_focused()
    wait_captcha_loaded(page)
    first_id = captcha_id(page)

    text = captcha_text(page, redis_client)
    page.fill("#imagecode", "".join("3" if c != "3" else "4" for c in text))
    page.click("#login-submit")
    expect(page.locator("#image-code-err")).to_have_text("图片验证码错误")
    wait_captcha_loaded(page)
    assert captcha_id(page) != first_id  # a used CAPTCHA is replaced

    page.fill("#imagecode", captcha_text(page, redis_client))
    page.click("#login-submit")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
