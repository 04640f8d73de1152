"""The tutorial apps with our server as their drop-in (issue 21), in Chromium behind real nginx
with docs/deploy/host-apps/<app>.conf: one origin, registration and login ours, the rest the
host app's (tests/hostapps/). For each app: register where its users register → a page of the
host app that needs a login shows the user → log out in the host app → our session check says
nobody; then the host app's own login → our page or session check shows the user."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from services.store import keys
from tests.browser.helpers import (
    PASSWORD,
    BrowserLog,
    last_sms_code,
    open_register,
    request_sms,
)
from tests.conftest import LiveServer
from tests.hostapps.harness import HostApp
from tests.nginx.helpers import HostAppNginx, address
from tests.polling import wait_until

MEIDUO_PASSWORD = "password123"  # meiduo's login wants ^[0-9A-Za-z]{8,20}$
LOGGED_OUT = {"errno": "4101", "errmsg": "false"}
# A front-end's login by the host app's own route (ihome's login.js, a news admin's): JSON
# with the CSRF token of the host's csrf_token cookie in X-CSRFToken.
HOST_LOGIN_JS = """async ([mobile, password]) => {
  const token = document.cookie.split("; ").find((c) => c.startsWith("csrf_token=")).slice(11);
  const answer = await fetch("/host/login", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
    body: JSON.stringify({mobile, password}),
  });
  return answer.json();
}"""


@dataclass
class Site:
    host: HostApp
    page: Page  # on nginx's origin


@pytest.fixture
def site(browser, start_host_app, config, clean_state, tmp_path):
    """site(kind): the host app, our server.py with its host_app settings, nginx with the
    app's site file in front of both, and a Chromium page on nginx. Afterwards: the pages
    made no request off the origin and logged no error."""
    stack: list = []

    def open_site(kind: str) -> Site:
        host = start_host_app(kind)
        env = {**host.server_env(), "SMSREG_SECURITY_TRUSTED_PROXIES": "127.0.0.1/32"}
        server = LiveServer(config, tmp_path / "server.log", env).start()
        stack.append(server)
        proxy = HostAppNginx(tmp_path / "nginx", kind, address(server), address(host))
        stack.append(proxy.start())
        context = browser.new_context(base_url=proxy.base_url, locale="zh-CN")
        context.set_default_timeout(10_000)
        log = BrowserLog(proxy.base_url)
        log.watch(context)
        stack.append((context, log))
        return Site(host, context.new_page())

    yield open_site
    logs = []
    for item in reversed(stack):
        if isinstance(item, tuple):
            item[0].close()
            logs.append(item[1])
        else:
            item.stop()
    for log in logs:
        assert log.foreign_requests == [], "pages must work offline"
        assert log.errors == [], "console errors"


def shown_json(page: Page, path: str) -> dict:
    """Open path in the page and read the JSON it shows."""
    page.goto(path)
    return json.loads(page.inner_text("body"))


def captcha_answer(page: Page, redis_client, selector: str, id_pattern: str) -> str:
    """The text of the CAPTCHA image at selector once it is shown (its id from the src)."""
    page.wait_for_function(
        f"() => {{ const img = document.querySelector('{selector}');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
    image_id = re.search(id_pattern, page.get_attribute(selector, "src")).group(1)
    key = keys.captcha_key(image_id)
    return wait_until(lambda: redis_client.get(key), what=f"{key} in Redis")


def test_ihome(site, redis_client, sandbox, fresh_mobile):
    page, mobile = site("ihome").page, fresh_mobile()
    open_register(page)  # our register.html
    request_sms(page, redis_client, mobile)
    page.fill("#phonecode", last_sms_code(sandbox, mobile))
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.check("#agree")
    page.click("#register-submit")
    expect(page.locator("h1")).to_have_text("爱家租房")  # ihome's index

    session = shown_json(page, "/host/whoami")["data"]["session"]  # login_required
    assert (session["name"], session["mobile"]) == (mobile, mobile)
    shown_json(page, "/host/logout")  # ihome's logout
    assert shown_json(page, "/api/v1.0/session") == LOGGED_OUT

    page.goto("/")  # a page of ihome's, which sets its csrf_token cookie
    assert page.evaluate(HOST_LOGIN_JS, [mobile, PASSWORD])["errno"] == "0"
    page.goto("/my.html")
    expect(page.locator("#profile-name")).to_have_text(f"{mobile[:3]}****{mobile[-4:]}")


def test_meiduo(site, redis_client, sandbox, fresh_mobile):
    page, mobile = site("meiduo").page, fresh_mobile()
    username = f"user_{mobile[-6:]}"
    page.goto("/register/")  # meiduo's page; its form posts to us
    page.fill("#user_name", username)
    page.fill("#pwd", MEIDUO_PASSWORD)
    page.fill("#cpwd", MEIDUO_PASSWORD)
    page.fill("#phone", mobile)
    page.fill("#pic_code", captcha_answer(page, redis_client, ".pic_code", r"/image_codes/(.+)/$"))
    page.click(".get_msg_code")
    expect(page.locator(".get_msg_code")).to_have_text("60秒")
    page.fill("#msg_code", last_sms_code(sandbox, mobile))
    page.check("#allow")
    page.click("input[type=submit]")
    expect(page.locator("#username")).to_have_text(username)  # meiduo's index greets its cookie

    me = shown_json(page, "/host/info/")  # LoginRequiredMixin: request.user
    assert (me["username"], me["mobile"]) == (username, mobile)
    page.goto("/host/logout/")  # meiduo's logout
    assert shown_json(page, "/api/v1.0/session") == LOGGED_OUT

    page.goto("/host/login/")  # meiduo's own login page and form
    page.fill("input[name=username]", mobile)
    page.fill("input[name=password]", MEIDUO_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url("/host/info/")
    assert shown_json(page, "/api/v1.0/session")["data"] == {"name": username}


def test_news(site, redis_client, sandbox, fresh_mobile):
    page, mobile = site("news").page, fresh_mobile()
    page.goto("/")  # news's index; its register modal posts to our /passport/
    page.click(".register_btn")
    page.fill("#register_mobile", mobile)
    image_id = r"imageCodeId=([^&]+)"
    page.fill("#imagecode", captcha_answer(page, redis_client, ".get_pic_code", image_id))
    page.click(".get_code")
    expect(page.locator(".get_code")).to_have_text("60秒")
    page.fill("#smscode", last_sms_code(sandbox, mobile))
    page.fill("#register_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#nick_name")).to_have_text(mobile)  # the reloaded page: data.user

    shown_json(page, "/host/logout")  # news's own logout code
    assert shown_json(page, "/api/v1.0/session") == LOGGED_OUT
    page.goto("/")
    expect(page.locator(".register_btn")).to_be_visible()

    assert page.evaluate(HOST_LOGIN_JS, [mobile, PASSWORD])["errno"] == "0"
    assert shown_json(page, "/api/v1.0/session")["data"] == {"name": mobile}
