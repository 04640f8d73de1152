"""Helpers for the browser tests: Debian's Chromium under Playwright, and page probes."""

from __future__ import annotations

import datetime
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import argon2
import requests
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from services.store import keys
from tests.polling import wait_until
from tests.users_sql import insert_user_sync

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download does not work offline: drive the Debian package instead,
# with everything that would phone home switched off.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "secret-123"
CALLBACK_TOKEN = "change-me-callback-token-00000000"  # config.yml receipts.callback_token
PASSWORD_HASH = argon2.PasswordHasher().hash(PASSWORD)
CLOCK_START = datetime.datetime(2026, 1, 5, 10, 0, 0, tzinfo=datetime.UTC)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
COUNTDOWN_RE = re.compile(r"^(\d+)秒$")
# axe-core, vendored from npm (scripts/vendor-axe.sh): the accessibility check of the pages.
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


def launch(playwright: Playwright) -> Browser:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@dataclass
class BrowserLog:
    """What a page did that it should not: requests off the origin, console errors."""

    origin: str
    foreign_requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("request", self._on_request)
        context.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        context.on("weberror", lambda error: self.errors.append(str(error.error)))

    def _on_request(self, request) -> None:
        if not request.url.startswith(self.origin + "/"):
            self.foreign_requests.append(request.url)


def captcha_id(page: Page) -> str:
    """The CAPTCHA id of the image on the page (the last path segment of its src)."""
    src = page.get_attribute("#captcha-img", "src")
    assert src and src.startswith("/api/v1.0/image_codes/"), src
    return src.rsplit("/", 1)[1]


def captcha_text(page: Page, redis_client, image_id: str = "captcha-img") -> str:
    """The text of the CAPTCHA shown in <img id=image_id>, read from Redis once served."""
    wait_image(page, image_id)
    src = page.get_attribute(f"#{image_id}", "src")
    key = keys.captcha_key(src.rsplit("/", 1)[1])
    text: str = wait_until(
        lambda: redis_client.get(key), lambda value: value is not None, what=f"{key} in Redis"
    )
    return text


def voice_call(sandbox, mobile: str) -> dict:
    """The last voice call the sandbox received for mobile, once one has arrived."""
    calls = wait_until(
        lambda: [m for m in sandbox.inbox(mobile) if m["channel"] == "voice"],
        what="a voice call in the sandbox",
    )
    return calls[-1]


def countdown_seconds(page: Page) -> int:
    """The number the SMS button counts down, or fail if it is not counting."""
    text = page.inner_text("#send-sms").strip()
    match = COUNTDOWN_RE.match(text)
    assert match, f"SMS button shows {text!r}, not a countdown"
    return int(match.group(1))


def tab_to(page: Page, element_id: str, max_presses: int = 20) -> list[str]:
    """Press Tab until the element with element_id has focus; return what got focus on the way."""
    visited = []
    for _ in range(max_presses):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => document.activeElement.id || document.activeElement.tagName.toLowerCase()"
        )
        visited.append(focused)
        if focused == element_id:
            return visited
    raise AssertionError(f"Tab never reached #{element_id}; focus went {visited}")


def focused_id(page: Page) -> str:
    return page.evaluate("() => document.activeElement.id")


def wait_image(page: Page, image_id: str) -> None:
    page.wait_for_function(
        f"() => {{ const img = document.getElementById('{image_id}');"
        " return img.complete && img.naturalWidth > 0; }"
    )


def wait_captcha_loaded(page: Page) -> None:
    wait_image(page, "captcha-img")


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


def register_on_page(page: Page, redis_client, sandbox, mobile: str) -> None:
    """Sign up on /register.html (CAPTCHA, the code from the SMS, PASSWORD): logged in."""
    open_register(page)
    request_sms(page, redis_client, mobile)
    page.fill("#phonecode", last_sms_code(sandbox, mobile))
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.check("#agree")  # the consent (templates/consent_field.html)
    page.click("#register-submit")
    expect(page.locator("#user-name")).to_have_text(mobile)


def expect_counting(page: Page) -> None:
    """The SMS button counts down from the server's retry_after (60 s) and is disabled."""
    expect(page.locator("#send-sms")).to_have_text(COUNTDOWN_RE)
    expect(page.locator("#send-sms")).to_be_disabled()
    assert 55 <= countdown_seconds(page) <= 60


def last_sms_code(sandbox, mobile: str) -> str:
    return sandbox.inbox(mobile)[-1]["datas"][0]


# Probes a page for layout problems: sideways scrolling, controls off screen or too small to tap.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width) problems.push('horizontal scroll');
  for (const el of document.querySelectorAll('input, button, a.btn')) {
    if (el.getClientRects().length === 0) continue; // not rendered (a hidden tab or panel)
    // A checkbox is tapped through the label that holds it (templates/consent_field.html).
    const box = (el.type === "checkbox" ? el.closest("label") || el : el).getBoundingClientRect();
    if (box.left < 0 || box.right > width) problems.push(`#${el.id} sticks out`);
    if (box.height < 44) problems.push(`#${el.id} is ${box.height}px high`);
  }
  return problems;
}"""


def add_user(mariadb_server, redis_client, mobile: str) -> None:
    """A registered user (password PASSWORD), inserted directly: the sign-up is not under test.
    Its number joins the server's set of registered numbers as the server's own writes do."""
    insert_user_sync(mariadb_server, redis_client, mobile, PASSWORD_HASH)


# --- the fraud breaker, elevated from this machine --------------------------------------------

BLOCK = "1700077"
# Three unverified sends from 127.0.0.1 elevate its segments; the proof of work is small.
FRAUD_ENV = {
    "SMSREG_FRAUD_MIN_SENDS": "3",
    "SMSREG_FRAUD_ELEVATED_SENDS": "10",
    "SMSREG_FRAUD_POW_MAX_COUNTER": "300",
    "SMSREG_FRAUD_POW_COST": "20",
}


def elevate_localhost(server, redis_client) -> None:
    """The bot: three codes to the block from this machine, never verified."""
    session = requests.Session()
    for i in range(3):
        captcha = f"bot-{i}"
        session.get(f"{server.base_url}/api/v1.0/image_codes/{captcha}", timeout=10)
        text = redis_client.get(keys.captcha_key(captcha))
        query = urllib.parse.urlencode({"image_code": text, "image_code_id": captcha})
        answer = session.get(
            f"{server.base_url}/api/v1.0/sms_codes/{BLOCK}000{i}?{query}", timeout=10
        ).json()
        assert answer["errno"] == "0", answer


# --- accessibility: axe-core ------------------------------------------------------------------


def with_axe(context: BrowserContext) -> BrowserContext:
    """axe-core in every page of the context: an init script, which the pages' CSP (script-src
    'self') does not apply to, unlike a script tag."""
    context.add_init_script(path=str(AXE))
    return context


def axe_violations(page: Page) -> list[str]:
    """What axe-core finds wrong with the page as it is now (WCAG 2.x A/AA and best practice):
    "rule: selectors" per violation, [] when nothing."""
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, { resultTypes: ["violations"] });
          return result.violations.map(
            (v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
        }"""
    )
    return list(found)
