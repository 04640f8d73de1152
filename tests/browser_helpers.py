"""Helpers for the browser tests: Debian's Chromium under Playwright, and page probes."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, Playwright

from services import keys

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
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
COUNTDOWN_RE = re.compile(r"^(\d+)秒$")


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


def captcha_text(page: Page, redis_client, timeout: float = 5.0) -> str:
    """The text of the CAPTCHA on the page, read from Redis once the image was served."""
    key = keys.captcha_key(captcha_id(page))
    deadline = time.monotonic() + timeout
    while (text := redis_client.get(key)) is None:
        assert time.monotonic() < deadline, f"{key} never appeared in Redis"
        time.sleep(0.05)
    return text


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


def wait_captcha_loaded(page: Page) -> None:
    page.wait_for_function(
        "() => { const img = document.getElementById('captcha-img');"
        " return img.complete && img.naturalWidth > 0; }"
    )
