"""The pages in real headless Chromium against server.py as a subprocess (Playwright, sync
API): headers, local assets, keyboard-only use, layout on desktop and phone.

Set UPDATE_SCREENSHOTS=1 to rewrite docs/screenshots/register-{desktop,phone}.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import (
    DESKTOP,
    LAYOUT_PROBLEMS,
    PASSWORD,
    PHONE,
    captcha_text,
    expect_counting,
    focused_id,
    last_sms_code,
    open_register,
    tab_to,
)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"


# --- pages ----------------------------------------------------------------------------------


PAGES = [
    "/",
    "/index.html",
    "/register.html",
    "/login.html",
    "/reset_password.html",
    "/my.html",
    "/terms.html",
    "/privacy.html",
]


def test_page_headers_and_cookies(new_context):
    for path in PAGES:  # one loop, not parametrize: each test costs a server start
        context = new_context()
        response = context.request.get(path)
        assert response.status == 200, path
        headers = response.headers
        assert headers["content-type"].startswith("text/html")
        assert headers["cache-control"] == "no-cache"
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        cookies = {cookie["name"]: cookie["value"] for cookie in context.cookies()}
        assert cookies["csrf_token"] and cookies["_xsrf"], path


def test_assets_are_local_and_scripts_external(page, live_server):
    for path in PAGES:
        page.goto(path)
        assert page.evaluate("() => document.documentElement.lang") == "zh-CN"
        assert page.locator("script:not([src])").count() == 0, "CSP forbids inline scripts"
        assert page.locator("[style]").count() == 0, "CSP forbids inline styles"
        for selector in ["script[src]", "link[href]"]:
            urls = page.eval_on_selector_all(selector, "els => els.map(e => e.src || e.href)")
            for url in urls:
                # /brand.css: the configured colours (handlers/pages.py BrandStyleHandler).
                local = url.startswith(f"{live_server.base_url}/static/")
                assert local or url == f"{live_server.base_url}/brand.css", url


# --- keyboard only ------------------------------------------------------------------------------


def test_keyboard_only_registration(page, redis_client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    open_register(page)
    keyboard = page.keyboard

    tab_to(page, "mobile")
    keyboard.type(mobile)
    tab_to(page, "imagecode")
    # Enter on the image button brings a new CAPTCHA and returns focus to the input.
    tab_to(page, "captcha-refresh")
    old_src = page.get_attribute("#captcha-img", "src")
    keyboard.press("Enter")
    expect(page.locator("#captcha-img")).not_to_have_attribute("src", old_src)
    expect(page.locator("#imagecode")).to_be_focused()
    keyboard.type(captcha_text(page, redis_client))

    order = tab_to(page, "send-sms")
    assert order == ["captcha-refresh", "captcha-audio", "phonecode", "send-sms"]
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "keyboard focus must be visible"
    keyboard.press("Enter")
    expect_counting(page)
    expect(page.locator("#phonecode")).to_be_focused()  # the disabled button cannot keep it

    keyboard.type(last_sms_code(sandbox, mobile))
    assert tab_to(page, "password") == ["password"]  # the counting button is skipped
    keyboard.type(PASSWORD)
    tab_to(page, "password2")
    keyboard.type(PASSWORD)
    # The consent box, unchecked: Space ticks it (its links come next in the tab order).
    assert tab_to(page, "agree") == ["agree"]
    keyboard.press("Space")
    expect(page.locator("#agree")).to_be_checked()
    keyboard.press("Enter")

    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
    tab_to(page, "logout")
    keyboard.press("Enter")
    expect(page.locator("#guest-panel")).to_be_visible()
    assert focused_id(page) == "login-link"


# --- layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_register_layout(new_context, name, viewport, tmp_path):
    page = new_context(viewport).new_page()
    open_register(page)
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    send, code = page.locator("#send-sms").bounding_box(), page.locator("#phonecode").bounding_box()
    assert abs(send["y"] - code["y"]) < 2, "the SMS button sits next to its input"
    out = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=out / f"register-{name}.png", full_page=True)

    # Inline errors and the countdown must fit as well.
    page.fill("#password", "x")
    page.click("#register-submit")
    page.click("#send-sms")
    expect(page.locator("#mobile-err")).not_to_be_empty()
    page.evaluate(
        "() => sessionStorage.setItem('ihome.smsCountdown', "
        "JSON.stringify({mobile: '13800000000', until: Date.now() + 60000}))"
    )
    page.reload()
    page.click("#register-submit")
    expect(page.locator("#send-sms")).to_be_disabled()
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    page.screenshot(path=tmp_path / f"register-{name}-errors.png", full_page=True)
