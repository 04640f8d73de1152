"""The account pages of issue 23 in Chromium, keyboard only, at 1280 and 360 px, each state
checked by axe-core: 修改密码 and 登录设备 on my.html, one-step SMS sign-in on login.html, the
confirmation of a password reset. Set UPDATE_SCREENSHOTS=1 to rewrite docs/screenshots/.

The page clock runs here: axe-core waits on timers, and nothing asserted depends on time (the
countdown is tested with a paused clock in test_forms.py)."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import (
    DESKTOP,
    PASSWORD,
    PHONE,
    add_user,
    axe_violations,
    captcha_text,
    focused_id,
    last_sms_code,
    tab_to,
    with_axe,
)
from tests.conftest import ROOT

SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORTS = pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
NEW_PASSWORD = "brand-new-456"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


def shot(locator, tmp_path, file: str) -> None:
    out = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    locator.screenshot(path=out / file)


def spelled(mobile: str) -> str:
    """The way people write it: +86 and spaces (the server's canonical_mobile reads it)."""
    return f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"


def log_in(page: Page, mobile: str, password: str = PASSWORD) -> None:
    page.goto("/login.html")
    page.fill("#mobile", spelled(mobile))
    page.fill("#password", password)
    page.click("#login-submit")
    expect(page).to_have_url("/")


def tab_to_label(page: Page, prefix: str, max_presses: int = 80) -> None:
    """Press Tab until the focused control's accessible label starts with prefix."""
    for _ in range(max_presses):
        page.keyboard.press("Tab")
        label = page.evaluate("() => document.activeElement.getAttribute('aria-label') || ''")
        if label.startswith(prefix):
            return
    raise AssertionError(f"Tab never reached a control labelled {prefix!r}")


def select_and_type(page: Page, text: str) -> None:
    page.keyboard.press("Control+a")
    page.keyboard.type(text)


@VIEWPORTS
def test_change_password_keyboard_only(
    new_context, mariadb_server, redis_client, fresh_mobile, name, viewport, tmp_path
):
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    other = new_context().new_page()
    log_in(other, mobile)
    page = with_axe(new_context(viewport)).new_page()
    log_in(page, mobile)  # "+86 138 …" accepted by the page as by the API
    page.goto("/my.html")
    masked = f"{mobile[:3]}****{mobile[-4:]}"
    expect(page.locator("#profile-name")).to_have_text(masked)  # not the full number
    expect(page.locator("#profile-mobile")).to_have_text(masked)
    expect(page.locator("#device-list li")).to_have_count(2)
    assert axe_violations(page) == []
    out = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    page.screenshot(path=out / f"my-account-{name}.png", full_page=True)

    keyboard = page.keyboard
    tab_to(page, "old-password", 80)
    keyboard.type("wrong-password")
    keyboard.press("Tab")
    assert focused_id(page) == "new-password"
    keyboard.type(NEW_PASSWORD)
    keyboard.press("Tab")
    assert focused_id(page) == "new-password2"
    keyboard.type(NEW_PASSWORD)
    keyboard.press("Enter")
    expect(page.locator("#old-password-err")).to_have_text("原密码错误")
    expect(page.locator("#old-password")).to_be_focused()
    assert axe_violations(page) == []

    select_and_type(page, PASSWORD)
    keyboard.press("Enter")
    expect(page.locator("#my-status")).to_have_text("密码已修改，其他设备上的登录已退出")
    expect(page.locator("#my-status")).to_be_focused()
    expect(page.locator("#device-list li")).to_have_count(1)
    expect(page.locator("#old-password")).to_be_empty()
    assert axe_violations(page) == []

    other.reload()
    expect(other.locator("#guest-panel")).to_be_visible()
    page.reload()
    expect(page.locator("#profile-name")).to_have_text(masked)  # this browser stays in


@VIEWPORTS
def test_devices_keyboard_only(
    new_context, mariadb_server, redis_client, fresh_mobile, name, viewport, tmp_path
):
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    iphone = new_context(user_agent=SAFARI_IPHONE).new_page()
    log_in(iphone, mobile)
    windows = new_context(user_agent=FIREFOX_WINDOWS).new_page()
    log_in(windows, mobile)
    page = with_axe(new_context(viewport)).new_page()
    log_in(page, mobile)
    page.goto("/my.html")
    items = page.locator("#device-list li")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("当前设备")
    expect(page.locator("#device-list")).to_contain_text("Safari 17 · iOS")
    expect(page.locator("#device-list")).to_contain_text("Firefox 128 · Windows")
    expect(page.locator("#device-list")).to_contain_text("127.0.0.1 · 最近使用")
    assert axe_violations(page) == []
    shot(page.locator("#devices"), tmp_path, f"my-devices-{name}.png")

    tab_to_label(page, "退出 Safari 17 · iOS")
    page.keyboard.press("Enter")
    expect(page.locator("#devices-status")).to_have_text("已退出 Safari 17 · iOS")
    expect(page.locator("#devices-status")).to_be_focused()
    expect(items).to_have_count(2)
    iphone.reload()
    expect(iphone.locator("#guest-panel")).to_be_visible()
    assert axe_violations(page) == []

    page.keyboard.press("Tab")  # from the message to the next control: 退出其他设备
    assert focused_id(page) == "end-others"
    page.keyboard.press("Enter")
    expect(page.locator("#devices-status")).to_have_text("其他设备已退出（1台）")
    expect(items).to_have_count(1)
    expect(page.locator("#end-others")).to_be_hidden()
    windows.reload()
    expect(windows.locator("#guest-panel")).to_be_visible()
    assert axe_violations(page) == []

    # 退出 stands apart from the button above it (they touched).
    gap = page.evaluate(
        """() => {
          const logout = document.getElementById("logout").getBoundingClientRect();
          const above = [...document.querySelectorAll("button")]
            .filter((b) => b.id !== "logout" && b.getClientRects().length)
            .map((b) => b.getBoundingClientRect().bottom)
            .filter((bottom) => bottom <= logout.top);
          return logout.top - Math.max(...above);
        }"""
    )
    assert gap >= 16


@VIEWPORTS
def test_sms_signup_keyboard_only(
    new_context, redis_client, sandbox, fresh_mobile, name, viewport, tmp_path
):
    mobile = fresh_mobile()  # no account
    page = with_axe(new_context(viewport)).new_page()
    page.goto("/login.html")
    keyboard = page.keyboard
    tab_to(page, "tab-password")
    keyboard.press("ArrowRight")
    expect(page.locator("#panel-sms")).to_be_visible()
    expect(page.locator("#panel-sms")).to_contain_text("未注册的手机号验证后将自动注册并登录")
    tab_to(page, "sms-mobile")
    keyboard.type(spelled(mobile))
    tab_to(page, "sms-imagecode")
    keyboard.type(captcha_text(page, redis_client, "sms-captcha-img"))
    tab_to(page, "sms-send-sms")
    keyboard.press("Enter")
    expect(page.locator("#sms-phone-code-status")).to_have_text(
        f"验证码已发送至 {mobile[:3]}****{mobile[-4:]}，请查收短信"
    )
    assert focused_id(page) == "sms-phonecode"
    assert axe_violations(page) == []
    shot(page.locator("section.card"), tmp_path, f"login-sms-signup-{name}.png")
    keyboard.type(last_sms_code(sandbox, mobile))
    keyboard.press("Enter")
    # A new number: the sign-up asks for the consent (the code is kept for the retry).
    expect(page.locator("#sms-agree-err")).to_have_text("请阅读并同意用户协议和隐私政策")
    assert focused_id(page) == "sms-agree"
    keyboard.press("Space")
    tab_to(page, "sms-login-submit")
    keyboard.press("Enter")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)


@VIEWPORTS
def test_reset_confirmation_keyboard_only(
    new_context, redis_client, sandbox, mariadb_server, fresh_mobile, name, viewport, tmp_path
):
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    page = with_axe(new_context(viewport)).new_page()
    page.goto("/reset_password.html")
    keyboard = page.keyboard
    tab_to(page, "mobile")
    keyboard.type(spelled(mobile))
    tab_to(page, "imagecode")
    keyboard.type(captcha_text(page, redis_client))
    tab_to(page, "send-sms")
    keyboard.press("Enter")
    expect(page.locator("#phone-code-status")).to_contain_text(mobile[-4:])
    assert focused_id(page) == "phonecode"
    keyboard.type(last_sms_code(sandbox, mobile))
    tab_to(page, "password")
    keyboard.type(NEW_PASSWORD)
    tab_to(page, "password2")
    keyboard.type(NEW_PASSWORD)
    keyboard.press("Enter")
    expect(page.locator("#reset-done-msg")).to_be_focused()
    expect(page.locator("#reset-done-msg")).to_have_text(
        "密码已重置，您已登录。其他设备上的登录已全部退出。"
    )
    assert axe_violations(page) == []
    shot(page.locator("section.card"), tmp_path, f"reset-done-{name}.png")
    keyboard.press("Tab")
    assert focused_id(page) == "done-home"
    keyboard.press("Enter")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
