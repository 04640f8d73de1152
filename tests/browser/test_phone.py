"""The phone-account pages in Chromium: SMS login, 忘记密码, 我的账号 (change of mobile).

Each journey is one test (a server start each).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import (
    DESKTOP,
    LAYOUT_PROBLEMS,
    PASSWORD,
    PHONE,
    add_user,
    captcha_text,
    focused_id,
    tab_to,
    wait_image,
)

NEW_PASSWORD = "brand-new-456"


def get_code(page: Page, redis_client, sandbox, mobile: str, prefix: str = "") -> None:
    """Fill the mobile and the CAPTCHA, press 获取验证码, fill in the code from the SMS."""
    page.fill(f"#{prefix}mobile", mobile)
    page.fill(f"#{prefix}imagecode", captcha_text(page, redis_client, f"{prefix}captcha-img"))
    page.click(f"#{prefix}send-sms")
    expect(page.locator(f"#{prefix}phone-code-status")).to_contain_text(mobile[-4:])
    expect(page.locator(f"#{prefix}send-sms")).to_be_disabled()
    page.fill(f"#{prefix}phonecode", sandbox.inbox(mobile)[-1]["datas"][0])


def password_login(page: Page, mobile: str, password: str = PASSWORD) -> None:
    page.goto("/login.html")
    page.fill("#mobile", mobile)
    page.fill("#password", password)
    page.click("#login-submit")


def expect_code_input(page: Page, selector: str) -> None:
    code = page.locator(selector)
    expect(code).to_have_attribute("autocomplete", "one-time-code")
    expect(code).to_have_attribute("inputmode", "numeric")


def test_sms_login_journey(page, redis_client, sandbox, mariadb_server, fresh_mobile):
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    page.goto("/login.html")
    expect(page.locator("#panel-sms")).to_be_hidden()
    expect(page.locator("#forgot-link")).to_have_attribute("href", "/reset_password.html")
    page.click("#tab-sms")
    expect(page.locator("#tab-sms")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-password")).to_be_hidden()
    expect_code_input(page, "#sms-phonecode")

    # An unregistered number is answered alike (one-step SMS sign-in): no account enumeration.
    stranger = fresh_mobile()
    page.fill("#sms-mobile", stranger)
    page.fill("#sms-imagecode", captcha_text(page, redis_client, "sms-captcha-img"))
    page.click("#sms-send-sms")
    expect(page.locator("#sms-phone-code-status")).to_have_text(
        f"验证码已发送至 {stranger[:3]}****{stranger[-4:]}，请查收短信"
    )
    expect(page.locator("#sms-mobile-err")).to_be_empty()

    get_code(page, redis_client, sandbox, mobile, "sms-")
    page.click("#sms-login-submit")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
    assert page.evaluate("() => sessionStorage.getItem('ihome.smsCountdown')") is None


def test_keyboard_only_sms_login(page, redis_client, sandbox, mariadb_server, fresh_mobile):
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    page.goto("/login.html")
    keyboard = page.keyboard
    tab_to(page, "tab-password")
    keyboard.press("ArrowRight")
    assert focused_id(page) == "tab-sms"
    expect(page.locator("#panel-sms")).to_be_visible()
    tab_to(page, "sms-mobile")
    keyboard.type(mobile)
    tab_to(page, "sms-imagecode")
    keyboard.type(captcha_text(page, redis_client, "sms-captcha-img"))
    tab_to(page, "sms-send-sms")
    keyboard.press("Enter")
    expect(page.locator("#sms-phone-code-status")).to_contain_text(mobile[-4:])
    assert focused_id(page) == "sms-phonecode"  # the code goes in next
    keyboard.type(sandbox.inbox(mobile)[-1]["datas"][0])
    keyboard.press("Enter")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)


def test_reset_password_ends_the_old_session(
    new_context, redis_client, sandbox, mariadb_server, fresh_mobile
):
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    laptop = new_context().new_page()
    password_login(laptop, mobile)
    expect(laptop).to_have_url("/")
    expect(laptop.locator("#user-name")).to_have_text(mobile)

    phone = new_context().new_page()
    phone.goto("/login.html")
    phone.click("#forgot-link")
    expect(phone).to_have_url("/reset_password.html")
    expect_code_input(phone, "#phonecode")
    get_code(phone, redis_client, sandbox, mobile)
    phone.fill("#password", NEW_PASSWORD)
    phone.fill("#password2", NEW_PASSWORD + "x")
    phone.click("#reset-submit")
    expect(phone.locator("#password2-err")).to_have_text("两次密码不一致")
    phone.fill("#password2", NEW_PASSWORD)
    phone.click("#reset-submit")
    # Told so on the page, focus on the message, then where to go.
    expect(phone.locator("#reset-done-msg")).to_be_focused()
    expect(phone.locator("#reset-form")).to_be_hidden()
    phone.click("#done-home")
    expect(phone).to_have_url("/")
    expect(phone.locator("#user-name")).to_have_text(mobile)

    laptop.reload()
    expect(laptop.locator("#guest-panel")).to_be_visible()  # the old session is gone
    password_login(laptop, mobile)
    expect(laptop.locator("#form-err")).to_have_text("手机号或密码错误")
    password_login(laptop, mobile, NEW_PASSWORD)
    expect(laptop).to_have_url("/")


def test_change_mobile_then_log_in_with_the_new_number_only(
    new_context, redis_client, sandbox, mariadb_server, fresh_mobile
):
    old, new = fresh_mobile(), fresh_mobile()
    add_user(mariadb_server, redis_client, old)
    other_device = new_context().new_page()
    password_login(other_device, old)
    expect(other_device).to_have_url("/")

    page = new_context().new_page()
    page.goto("/my.html")
    expect(page.locator("#my-guest")).to_be_visible()  # not logged in yet
    expect(page.locator("#change-form")).to_be_hidden()
    page.click("#my-login-link")
    expect(page).to_have_url("/login.html")
    password_login(page, old)
    expect(page).to_have_url("/")
    page.click("#my-link")
    expect(page).to_have_url("/my.html")
    expect(page.locator("#profile-mobile")).to_have_text(f"{old[:3]}****{old[-4:]}")
    expect_code_input(page, "#phonecode")

    # A number that belongs to someone is refused before any SMS.
    page.fill("#mobile", old)
    page.fill("#imagecode", captcha_text(page, redis_client, "captcha-img"))
    page.click("#send-sms")
    expect(page.locator("#mobile-err")).to_have_text("该手机号已被使用")

    get_code(page, redis_client, sandbox, new)
    # The session alone is not enough: the current password too (a copied cookie moves nothing).
    page.click("#change-submit")
    expect(page.locator("#password-err")).to_have_text("请输入当前登录密码")
    page.fill("#password", "not-the-password")
    page.click("#change-submit")
    expect(page.locator("#password-err")).to_have_text("密码错误")
    expect(page.locator("#phonecode")).not_to_be_empty()  # the new number's code stays
    assert sandbox.inbox(old) == []
    page.fill("#password", PASSWORD)
    page.click("#change-submit")
    expect(page.locator("#my-status")).to_have_text(f"手机号已更换为 {new[:3]}****{new[-4:]}")
    expect(page.locator("#profile-mobile")).to_have_text(f"{new[:3]}****{new[-4:]}")
    expect(page.locator("#phone-code-status")).to_be_empty()  # no stale "sent to …"
    assert sandbox.inbox(old)[-1]["datas"] == [f"{new[:3]}****{new[-4:]}"]  # the notice

    other_device.reload()
    expect(other_device.locator("#guest-panel")).to_be_visible()

    page.click("#logout")
    expect(page).to_have_url("/")
    expect(page.locator("#guest-panel")).to_be_visible()
    password_login(page, old)
    expect(page.locator("#form-err")).to_have_text("手机号或密码错误")
    password_login(page, new)
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(new)


def test_change_mobile_with_a_code_sent_to_the_current_number(
    page, redis_client, sandbox, mariadb_server, fresh_mobile
):
    old, new = fresh_mobile(), fresh_mobile()
    add_user(mariadb_server, redis_client, old)
    password_login(page, old)
    expect(page).to_have_url("/")
    page.goto("/my.html")
    get_code(page, redis_client, sandbox, new)
    page.click("#use-current-code")  # 忘记密码？改用原手机号验证码
    expect(page.locator("#password")).to_be_hidden()
    page.fill("#cur-imagecode", captcha_text(page, redis_client, "cur-captcha-img"))
    page.click("#cur-send-sms")
    expect(page.locator("#cur-phone-code-status")).to_have_text(
        f"验证码已发送至原手机号 {old[:3]}****{old[-4:]}"
    )
    expect(page.locator("#cur-send-sms")).to_be_disabled()
    current = sandbox.inbox(old)[-1]["datas"][0]  # to the account's own number
    page.fill("#cur-phonecode", f"{(int(current) + 1) % 1_000_000:06d}")
    page.click("#change-submit")
    expect(page.locator("#cur-phone-code-err")).to_contain_text("原手机号的短信验证码错误")
    page.fill("#cur-phonecode", current)
    page.click("#change-submit")
    expect(page.locator("#my-status")).to_have_text(f"手机号已更换为 {new[:3]}****{new[-4:]}")
    expect(page.locator("#profile-mobile")).to_have_text(f"{new[:3]}****{new[-4:]}")


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_phone_account_layouts(
    new_context, mariadb_server, redis_client, fresh_mobile, name, viewport
):
    page = new_context(viewport).new_page()
    page.goto("/login.html")
    page.click("#tab-sms")
    wait_image(page, "sms-captcha-img")
    assert page.evaluate(LAYOUT_PROBLEMS) == [], "login, SMS tab"
    page.click("#sms-login-submit")
    expect(page.locator("#sms-mobile-err")).not_to_be_empty()
    assert page.evaluate(LAYOUT_PROBLEMS) == [], "login, SMS tab with errors"

    page.goto("/reset_password.html")
    wait_image(page, "captcha-img")
    page.click("#reset-submit")
    expect(page.locator("#mobile-err")).not_to_be_empty()
    assert page.evaluate(LAYOUT_PROBLEMS) == [], "reset_password"

    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    password_login(page, mobile)
    expect(page).to_have_url("/")
    page.goto("/my.html")
    wait_image(page, "captcha-img")
    assert page.evaluate(LAYOUT_PROBLEMS) == [], "my"
