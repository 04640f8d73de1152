"""The registration page in Chromium when the client's fraud segment is elevated: the server
answers pow_required, the page solves the ALTCHA proof of work itself (vendored widget, Web
Worker, CSP 'self') and repeats the request; the user just sees the code arrive.
Without an elevated segment the page never asks (tests/browser/test_register.py: that journey).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import (
    BLOCK,
    FRAUD_ENV,
    PASSWORD,
    captcha_text,
    elevate_localhost,
    wait_captcha_loaded,
)


@pytest.mark.parametrize("server_env", [FRAUD_ENV])
def test_page_solves_proof_of_work_when_segment_is_elevated(
    new_context, live_server, redis_client, sandbox, server_env
):
    elevate_localhost(live_server, redis_client)
    mobile = f"{BLOCK}1234"
    context = new_context()  # checks afterwards: offline (vendored, no CDN), no errors
    context.set_default_timeout(20_000)
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
    page.check("#agree")  # the consent (templates/consent_field.html)
    page.click("#register-submit")
    expect(page).to_have_url("/")
    expect(page.locator("#user-name")).to_have_text(mobile)
