"""Fixtures of the browser tests: one Chromium for the package, a context per test on the
server process (server.py as a subprocess), and a check after each test that the pages made
no request off the origin and logged no error."""

from __future__ import annotations

import pytest
import redis
from playwright.sync_api import Page, sync_playwright

from tests.browser.helpers import DESKTOP, BrowserLog, launch
from tests.conftest import LiveServer


@pytest.fixture(scope="package")
def browser():
    # One Chromium for every browser test; each test gets its own context (cookies, storage).
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment of the server; a test parametrizes it to change it."""
    return {}


@pytest.fixture
def live_server(config, clean_state, tmp_path, server_env):
    """The server process without voice quiet hours (the tests must not depend on the time of
    day) and with the voice call's respUrl and the receipts pointing at itself."""
    server = LiveServer(config, tmp_path / "server.log", server_env)
    server.env.update(
        {
            "SMSREG_VOICE_QUIET_START": "00:00",
            "SMSREG_VOICE_QUIET_END": "00:00",
            "SMSREG_RECEIPTS_PUBLIC_BASE_URL": server.base_url,
        }
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser_log(live_server):
    return BrowserLog(live_server.base_url)


@pytest.fixture
def new_context(browser, live_server, browser_log):
    """Opens browser contexts on the live server; afterwards: no foreign requests, no errors."""
    contexts = []

    def open_context(viewport=DESKTOP, **options):
        context = browser.new_context(
            base_url=live_server.base_url, viewport=viewport, locale="zh-CN", **options
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
