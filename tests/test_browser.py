"""The pages in real headless Chromium against server.py as a subprocess (Playwright, sync API).

Set UPDATE_SCREENSHOTS=1 to rewrite docs/screenshots/register-{desktop,phone}.png.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect, sync_playwright

from services import keys
from services.login_throttle import account_key
from tests.browser_helpers import (
    COUNTDOWN_RE,
    DESKTOP,
    PHONE,
    BrowserLog,
    captcha_id,
    captcha_text,
    countdown_seconds,
    focused_id,
    launch,
    tab_to,
    wait_captcha_loaded,
)

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
PASSWORD = "secret-123"
CLOCK_START = datetime.datetime(2026, 1, 5, 10, 0, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def browser():
    # One Chromium for the module; each test gets its own context (cookies, storage).
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def browser_log(live_server):
    return BrowserLog(live_server.base_url)


@pytest.fixture
def new_context(browser, live_server, browser_log):
    """Opens browser contexts on the live server; afterwards: no foreign requests, no errors."""
    contexts = []

    def open_context(viewport=DESKTOP):
        context = browser.new_context(
            base_url=live_server.base_url, viewport=viewport, locale="zh-CN"
        )
        context.set_default_timeout(10_000)
        browser_log.watch(context)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()
    assert browser_log.foreign_requests == [], "pages must work offline"
    assert browser_log.errors == [], "console errors"


@pytest.fixture
def page(new_context) -> Page:
    return new_context().new_page()


@pytest.fixture
def redis_client(redis_server):
    with redis.Redis(port=redis_server.port, decode_responses=True) as client:
        yield client


def freeze_clock(page: Page) -> None:
    """Fake timers, paused: the page's time moves only by page.clock.run_for, never by itself,
    so countdown assertions are exact however busy the machine is."""
    page.clock.install(time=CLOCK_START)
    # Installed, the clock runs on from CLOCK_START; pausing must jump ahead of wherever it is
    # by now (pause_at refuses the past), so the pause is an hour on, beyond any slow machine.
    page.clock.pause_at(CLOCK_START + datetime.timedelta(hours=1))


def open_register(page: Page) -> None:
    page.goto("/register.html")
    wait_captcha_loaded(page)


def request_sms(page: Page, redis_client, mobile: str) -> None:
    """Fill mobile and the right CAPTCHA, click 获取验证码, wait for the countdown."""
    page.fill("#mobile", mobile)
    page.fill("#imagecode", captcha_text(page, redis_client))
    page.click("#send-sms")
    expect_counting(page)


def expect_counting(page: Page) -> None:
    """The SMS button counts down from the server's retry_after (60 s) and is disabled."""
    expect(page.locator("#send-sms")).to_have_text(COUNTDOWN_RE)
    expect(page.locator("#send-sms")).to_be_disabled()
    assert 55 <= countdown_seconds(page) <= 60


def last_sms_code(sandbox, mobile: str) -> str:
    return sandbox.inbox(mobile)[-1]["datas"][0]


# --- pages ----------------------------------------------------------------------------------


PAGES = ["/", "/index.html", "/register.html", "/login.html", "/reset_password.html", "/my.html"]


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
                assert url.startswith(f"{live_server.base_url}/static/"), url


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
    page.click("#register-submit")
    expect(page.locator("#phone-code-err")).to_contain_text("短信验证码错误")
    expect(page.locator("#phonecode")).to_be_focused()
    expect(page).to_have_url("/register.html")


def test_registered_mobile_and_wrong_login(page, redis_client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    open_register(page)
    request_sms(page, redis_client, mobile)
    page.fill("#phonecode", last_sms_code(sandbox, mobile))
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.click("#register-submit")
    expect(page.locator("#user-name")).to_have_text(mobile)
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
    expect(page.locator("#form-err")).to_have_text("用户名或密码错误")
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
    open_register(page)
    request_sms(page, redis_client, mobile)
    page.fill("#phonecode", last_sms_code(sandbox, mobile))
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.click("#register-submit")
    expect(page.locator("#user-name")).to_have_text(mobile)
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
    keyboard.press("Enter")

    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
    tab_to(page, "logout")
    keyboard.press("Enter")
    expect(page.locator("#guest-panel")).to_be_visible()
    assert focused_id(page) == "login-link"


# --- layout -------------------------------------------------------------------------------------

LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width) problems.push('horizontal scroll');
  for (const el of document.querySelectorAll('input, button, a.btn')) {
    if (el.getClientRects().length === 0) continue; // not rendered (a hidden tab or panel)
    const box = el.getBoundingClientRect();
    if (box.left < 0 || box.right > width) problems.push(`#${el.id} sticks out`);
    if (box.height < 44) problems.push(`#${el.id} is ${box.height}px high`);
  }
  return problems;
}"""


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
