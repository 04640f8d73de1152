"""The consent on the registration page and 注销账号 on my.html (issue 23 items 1 and 2), in
Chromium at 1280 and 360 px, keyboard only, with axe-core (vendored: scripts/vendor-axe.sh)
finding no violation. UPDATE_SCREENSHOTS=1 writes the screenshots to docs/screenshots/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import (
    DESKTOP,
    LAYOUT_PROBLEMS,
    PASSWORD,
    PHONE,
    add_user,
    captcha_text,
    last_sms_code,
    open_register,
    request_sms,
    tab_to,
    wait_image,
)
from tests.conftest import ROOT

SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
VIEWPORTS = [("desktop", DESKTOP), ("phone", PHONE)]


def axe_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it is now (WCAG 2.x A and AA rules and best
    practices), one line each. Evaluated through DevTools: the pages' CSP does not apply."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE)
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']}: {v['help']} ({', '.join(n['target'][0] for n in v['nodes'])})" for v in found
    ]


def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    out = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=out / f"{name}.png", full_page=True)


@pytest.mark.parametrize(("name", "viewport"), VIEWPORTS)
def test_registration_needs_the_consent_box_keyboard_only(
    new_context, redis_client, sandbox, fresh_mobile, name, viewport, tmp_path
):
    page = new_context(viewport).new_page()
    mobile = fresh_mobile()
    open_register(page)
    box = page.locator("#agree")
    expect(box).not_to_be_checked()  # never ticked for the user
    for link, href in [("《用户协议》", "/terms.html"), ("《隐私政策》", "/privacy.html")]:
        expect(page.get_by_role("link", name=link)).to_have_attribute("href", href)
    assert axe_violations(page) == []
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    screenshot(page, f"register-consent-{name}", tmp_path)

    request_sms(page, redis_client, mobile)
    page.fill("#phonecode", last_sms_code(sandbox, mobile))
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.focus("#password2")
    page.keyboard.press("Enter")  # not ticked: refused on the page, nothing sent
    expect(page.locator("#agree-err")).to_have_text("请阅读并同意用户协议和隐私政策")
    expect(box).to_be_focused()
    expect(box).to_have_attribute("aria-invalid", "true")
    assert axe_violations(page) == []
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    expect(page.locator("#agree-err")).to_be_empty()
    tab_to(page, "register-submit")
    page.keyboard.press("Enter")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)


def test_the_agreements_pages(page, tmp_path):
    for path in ("/terms.html", "/privacy.html"):
        page.goto(path)
        expect(page.locator("h1")).to_contain_text("协议" if "terms" in path else "隐私政策")
        assert axe_violations(page) == []
    screenshot(page, "privacy-desktop", tmp_path)


@pytest.mark.parametrize(("name", "viewport"), VIEWPORTS)
def test_delete_account_keyboard_only(
    new_context, redis_client, sandbox, mariadb_server, fresh_mobile, name, viewport, tmp_path
):
    page = new_context(viewport).new_page()
    mobile = fresh_mobile()
    add_user(mariadb_server, redis_client, mobile)
    page.goto("/login.html")
    page.fill("#mobile", mobile)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url("/")
    page.goto("/my.html")
    section = page.locator("#delete-section")
    expect(section).to_be_visible()
    expect(page.locator("#delete-consequences")).to_contain_text("15 天冷静期")
    expect(page.locator("#delete-consequences")).to_contain_text("手机号和用户名将被释放")
    expect(page.locator("#delete-form")).to_be_hidden()
    assert axe_violations(page) == []
    screenshot(page, f"my-delete-{name}", tmp_path)

    tab_to(page, "delete-start", max_presses=40)
    page.keyboard.press("Enter")
    expect(page.locator("#delete-form")).to_be_visible()
    expect(page.locator("#del-imagecode")).to_be_focused()
    expect(page.locator("#delete-start")).to_be_hidden()
    wait_image(page, "del-captcha-img")
    page.keyboard.type(captcha_text(page, redis_client, "del-captcha-img"))
    tab_to(page, "del-send-sms")
    page.keyboard.press("Enter")
    expect(page.locator("#del-phone-code-status")).to_contain_text(mobile[-4:])
    expect(page.locator("#del-phonecode")).to_be_focused()
    page.keyboard.type(last_sms_code(sandbox, mobile))
    tab_to(page, "del-password")
    page.keyboard.type("wrong-password")
    page.keyboard.press("Enter")
    expect(page.locator("#del-password-err")).to_have_text("密码错误")
    expect(page.locator("#del-password")).to_be_focused()
    assert axe_violations(page) == []
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    screenshot(page, f"my-delete-form-{name}", tmp_path)

    page.keyboard.press("Control+A")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    done = page.locator("#delete-done")
    expect(done).to_contain_text("注销申请已提交")
    expect(done).to_be_focused()
    expect(page.locator("#delete-section")).to_be_hidden()
    assert axe_violations(page) == []
    screenshot(page, f"my-delete-done-{name}", tmp_path)
    # Every session ended: the page, reloaded, is a guest's.
    page.reload()
    expect(page.locator("#my-guest")).to_be_visible()
