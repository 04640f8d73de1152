"""meiduo's own error display (issue 14 §6): refused forms re-render the operator's meiduo
templates (families.meiduo_templates), and an unknown meiduo URL answers in meiduo's shape."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from services.config import ConfigError, load_config
from services.store import keys
from tests.conftest import ROOT, LiveServer, serving
from tests.flows import run_server
from tests.users_sql import insert_user

TEMPLATES = Path(__file__).resolve().parent / "fixtures" / "meiduo_templates"
PASSWORD = "abc12345xyz"
FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}


def slot(body: str, name: str) -> str | None:
    """The text of the fixture's element id=<name> (a message slot), None if not rendered."""
    found = re.search(rf'id="{name}">([^<]*)<', body)
    return found.group(1).strip() if found else None


def page_token(body: str) -> str:
    """The csrfmiddlewaretoken of the re-rendered form's {{ csrf_input }}."""
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    assert found, body
    return found.group(1)


async def post_form(client, path: str, fields: dict[str, str], token: str | None = None):
    if "csrftoken" not in client.cookies:
        await client.fetch(f"/image_codes/{uuid.uuid4()}/")
    fields = {"csrfmiddlewaretoken": token or client.cookies["csrftoken"], **fields}
    return await client.fetch(path, "POST", urllib.parse.urlencode(fields), FORM_TYPE)


async def send_code(client, sandbox, mobile: str) -> str:
    """A register code for mobile, through meiduo's own SMS route."""
    image_uuid = str(uuid.uuid4())
    assert (await client.fetch(f"/image_codes/{image_uuid}/")).code == 200
    text = await client.app.services.redis.get(keys.captcha_key(image_uuid))
    query = urllib.parse.urlencode({"image_code": text, "uuid": image_uuid})
    sent = json.loads((await client.fetch(f"/sms_codes/{mobile}/?{query}")).body)
    assert sent["code"] == "0", sent
    return sandbox.inbox(mobile)[-1]["datas"][0]


def html(response) -> str:
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8", response.body
    return response.body.decode()


@pytest.mark.gen_test(timeout=60)
async def test_register_refusals_rerender_the_meiduo_page(make_app, sandbox, fresh_mobile):
    app = await make_app(families={"meiduo_templates": str(TEMPLATES)})
    async with serving(app) as client:
        mobile, username = fresh_mobile(), f"user_{fresh_mobile()[-6:]}"
        form = {
            "username": username,
            "password": PASSWORD,
            "password2": PASSWORD,
            "mobile": mobile,
            "sms_code": "123456",
            "allow": "on",
        }
        # No code was ever sent: meiduo's 无效的短信验证码 case, in sms_code_errmsg, HTTP 200.
        expired = await post_form(client, "/register/", form)
        body = html(expired)
        assert expired.code == 200
        assert slot(body, "sms_code_errmsg") == "短信验证码失效，请重新获取"
        assert slot(body, "register_errmsg") is None
        assert 'href="/static/css/main.css"' in body and 'href="/login/"' in body
        assert f'value="{username}"' in body and f'value="{mobile}"' in body  # echoed back

        code = await send_code(client, sandbox, mobile)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        mismatch = await post_form(client, "/register/", {**form, "sms_code": wrong})
        assert mismatch.code == 200
        assert slot(html(mismatch), "sms_code_errmsg") == "短信验证码错误，还可尝试4次"

        # meiduo's own form rules: 403 as its HttpResponseForbidden, now on the page.
        unticked = await post_form(client, "/register/", {**form, "allow": ""})
        assert unticked.code == 403
        assert slot(html(unticked), "register_errmsg") == "请勾选用户协议"
        assert slot(unticked.body.decode(), "sms_code_errmsg") is None

        # A taken username: meiduo's DatabaseError case, register_errmsg, HTTP 200.
        await insert_user(client.app.services, fresh_mobile(), "taken_name")
        other = fresh_mobile()
        other_code = await send_code(client, sandbox, other)
        taken = await post_form(
            client,
            "/register/",
            {**form, "username": "taken_name", "mobile": other, "sms_code": other_code},
        )
        assert taken.code == 200
        assert slot(html(taken), "register_errmsg") == "用户名已存在"

        # The form posted again with the token the re-rendered page carries: it registers.
        done = await post_form(client, "/register/", {**form, "sms_code": code}, page_token(body))
        assert done.code == 302 and done.headers["Location"] == "/"


@pytest.mark.gen_test(timeout=60)
async def test_markup_in_echoed_fields_is_escaped(make_app):
    app = await make_app(families={"meiduo_templates": str(TEMPLATES)})
    async with serving(app) as client:
        attack = {
            "username": '"><script>alert(1)</script>',
            "password": PASSWORD,
            "password2": PASSWORD,
            "mobile": "[[ constructor.constructor('alert(2)')() ]]",
            "sms_code": "123456",
            "allow": "on",
        }
        refused = await post_form(client, "/register/", attack)
        body = html(refused)
        assert refused.code == 403
        assert "<script>alert(1)" not in body
        assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in body
        # Vue compiles the page with [[ ]]: such a value is not shown again at all.
        assert "alert(2)" not in body and 'id="phone" value=""' in body

        login = await post_form(client, "/login/", {"username": "<b>x</b>", "password": "p"})
        assert "<b>x</b>" not in html(login)
        assert 'value="&lt;b&gt;x&lt;/b&gt;"' in login.body.decode()


@pytest.mark.gen_test(timeout=60)
async def test_login_refusals_rerender_the_meiduo_page(make_app, fresh_mobile):
    app = await make_app(
        families={"meiduo_templates": str(TEMPLATES)}, accounts={"login_max_failures": 2}
    )
    async with serving(app) as client:
        fields = {"username": "nobody_here", "password": "wrong12345"}
        for _ in range(2):
            wrong = await post_form(client, "/login/", fields)
            assert wrong.code == 200  # meiduo's LoginView render()s the refusal
            assert slot(html(wrong), "account_errmsg") == "用户名或密码错误"
        locked = await post_form(client, "/login/", fields)
        assert locked.code == 429 and int(locked.headers["Retry-After"]) > 0
        assert "请" in (slot(html(locked), "account_errmsg") or "")

        # A missing XSRF token: 403 as before, but the page comes with a fresh csrf_input.
        no_token = await client.fetch("/login/", "POST", "username=a&password=b", FORM_TYPE)
        assert no_token.code == 403
        assert slot(html(no_token), "account_errmsg") == "CSRF令牌缺失或无效，请刷新页面后重试"
        assert page_token(no_token.body.decode())

        # A form that is not UTF-8 keeps its HTTP 400, on the page too.
        undecodable = await client.fetch(
            "/login/",
            "POST",
            f"csrfmiddlewaretoken={client.cookies['csrftoken']}&username=%FF&password=x",
            FORM_TYPE,
        )
        assert undecodable.code == 400
        assert slot(html(undecodable), "account_errmsg") == "请求格式错误"


@pytest.mark.gen_test(timeout=60)
async def test_without_templates_refusals_stay_plain_text(client, fresh_mobile):
    form = {"username": "someone_1", "password": PASSWORD, "password2": PASSWORD, "allow": "on"}
    refused = await post_form(
        client, "/register/", {**form, "mobile": fresh_mobile(), "sms_code": "123456"}
    )
    assert refused.code == 400
    assert refused.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert refused.body.decode() == "短信验证码失效，请重新获取"
    login = await post_form(client, "/login/", {"username": "nobody_here", "password": "x1234567"})
    assert (login.code, login.body.decode()) == (400, "用户名或密码错误")


def test_a_live_server_renders_the_templates(config, clean_state, tmp_path):
    """server.py as operators run it, configured by the environment."""
    env = {"SMSREG_FAMILIES_MEIDUO_TEMPLATES": str(TEMPLATES)}
    server = LiveServer(config, tmp_path / "server.log", env).start()
    try:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(f"{server.base_url}/image_codes/{uuid.uuid4()}/", timeout=10).read()
        token = next(c.value for c in jar if c.name == "csrftoken")
        data = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": "nobody_here", "password": "wrong12345"}
        ).encode()
        with opener.open(f"{server.base_url}/login/", data, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
            assert slot(response.read().decode(), "account_errmsg") == "用户名或密码错误"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda d: d / "missing", "is not a directory"),
        (lambda d: d, "no login.html in"),
    ],
)
def test_bad_template_directory_stops_startup_with_one_line(tmp_path, make_bad, message):
    (tmp_path / "register.html").write_text("{{ static('css/main.css') }}", encoding="utf-8")
    env = {**os.environ, "SMSREG_FAMILIES_MEIDUO_TEMPLATES": str(make_bad(tmp_path))}
    result = run_server(env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("config error: config key 'families.meiduo_templates': ")
    assert message in result.stderr


@pytest.mark.parametrize(
    ("login_html", "message"),
    [
        ("{% if account_errmsg %}", "login.html line 1: Unexpected end of template"),
        ("<a href=\"{{ url('goods:list') }}\">", "url('goods:list') names no meiduo route"),
        ("{{ account_errmsg | no_such_filter }}", "No filter named 'no_such_filter'"),
    ],
)
def test_templates_that_cannot_render_are_a_config_error(tmp_path, login_html, message):
    (tmp_path / "register.html").write_text(
        (TEMPLATES / "register.html").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "login.html").write_text(login_html, encoding="utf-8")
    environ = {"SMSREG_FAMILIES_MEIDUO_TEMPLATES": str(tmp_path)}
    with pytest.raises(ConfigError) as caught:
        load_config(ROOT / "config.yml", environ=environ)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- meiduo's 404 --------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_unknown_meiduo_urls_answer_in_meiduo_shape(client):
    meiduo_404 = {"code": "5003", "errmsg": "接口不存在"}
    for path in (
        "/sms_codes/13812345678",  # no trailing slash
        "/image_codes/a/b/",
        "/mobiles/13812345678/",
        "/usernames/someone/counts/",
        "/register/extra",
        "/login",
        "/logout/now/",
    ):
        response = await client.fetch(path)
        assert response.code == 404, path
        assert json.loads(response.body) == meiduo_404, path
    elsewhere = await client.fetch("/no/such/page")
    assert elsewhere.code == 404
    assert json.loads(elsewhere.body) == {"errno": "4002", "errmsg": "接口不存在"}
    assert (await client.fetch("/register.html")).code == 200  # ihome's page, not meiduo's


@pytest.mark.gen_test(timeout=30)
async def test_meiduo_switched_off_leaves_its_paths_to_the_common_404(make_app):
    app = await make_app(families={"meiduo": False})
    async with serving(app) as client:
        response = await client.fetch("/sms_codes/13812345678/")
        assert response.code == 404
        assert json.loads(response.body)["errno"] == "4002"
