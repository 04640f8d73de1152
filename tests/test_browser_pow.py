"""The registration page in Chromium when the client's fraud segment is elevated: the server
answers pow_required, the page solves the ALTCHA proof of work itself (vendored widget, Web
Worker, CSP 'self') and repeats the request; the user just sees the code arrive.
Without an elevated segment the page never asks (tests/test_browser.py covers that journey).
"""

from __future__ import annotations

import urllib.parse

import pytest
import redis
import requests
from playwright.sync_api import expect, sync_playwright

from services import keys
from tests.browser_helpers import DESKTOP, BrowserLog, captcha_text, launch, wait_captcha_loaded
from tests.conftest import LiveServer

PASSWORD = "secret-123"
BLOCK = "1700077"
# Three unverified sends from 127.0.0.1 elevate its segments; the proof of work is small.
FRAUD_ENV = {
    "SMSREG_FRAUD_MIN_SENDS": "3",
    "SMSREG_FRAUD_ELEVATED_SENDS": "10",
    "SMSREG_FRAUD_POW_MAX_COUNTER": "300",
    "SMSREG_FRAUD_POW_COST": "20",
}


@pytest.fixture
def pow_server(config, clean_state, tmp_path):
    server = LiveServer(config, tmp_path / "server.log", FRAUD_ENV).start()
    yield server
    server.stop()


def elevate_localhost(server: LiveServer, redis_client) -> None:
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


def test_page_solves_proof_of_work_when_segment_is_elevated(pow_server, redis_server, sandbox):
    with redis.Redis(port=redis_server.port, decode_responses=True) as redis_client:
        elevate_localhost(pow_server, redis_client)
        mobile = f"{BLOCK}1234"
        with sync_playwright() as playwright:
            browser = launch(playwright)
            context = browser.new_context(
                base_url=pow_server.base_url, viewport=DESKTOP, locale="zh-CN"
            )
            context.set_default_timeout(20_000)
            log = BrowserLog(pow_server.base_url)
            log.watch(context)
            sms_requests = []
            context.on(
                "request",
                lambda request: (
                    request.url.endswith("/api/v1.0/sms_codes")
                    and sms_requests.append(request.post_data_json)
                ),
            )
            page = context.new_page()
            page.goto("/register.html")
            wait_captcha_loaded(page)
            page.fill("#mobile", mobile)
            page.fill("#imagecode", captcha_text(page, redis_client))
            page.click("#send-sms")

            expect(page.locator("#phone-code-status")).to_contain_text(mobile[-4:])
            expect(page.locator("#send-sms")).to_be_disabled()
            # Asked once without, then once with the solved proof of work, same CAPTCHA.
            assert len(sms_requests) == 2, sms_requests
            first, second = sms_requests
            assert "altcha" not in first and second["altcha"]
            assert first["image_code_id"] == second["image_code_id"]
            expect(page.locator("#pow-box")).to_be_hidden()

            page.fill("#phonecode", sandbox.inbox(mobile)[-1]["datas"][0])
            page.fill("#password", PASSWORD)
            page.fill("#password2", PASSWORD)
            page.click("#register-submit")
            expect(page).to_have_url("/")
            expect(page.locator("#user-name")).to_have_text(mobile)
            context.close()
            browser.close()
        assert log.foreign_requests == [], "the widget must work offline (vendored, no CDN)"
        assert log.errors == [], "console errors"
