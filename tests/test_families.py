"""The meiduo and news front-ends' own requests, end to end, against the same services."""

from __future__ import annotations

import json

import pytest

from tests.conftest import serving
from tests.flows import FAMILY_PASSWORD as PASSWORD
from tests.flows import MeiduoClient, NewsClient, form_body
from tests.users_sql import insert_user

# --- meiduo ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_meiduo_journey_and_error_codes(client, sandbox, fresh_mobile):
    meiduo = MeiduoClient(client)
    mobile, username = fresh_mobile(), f"user_{fresh_mobile()[-6:]}"
    assert await meiduo.get_json(f"/mobiles/{mobile}/count/") == {
        "code": "0",
        "errmsg": "OK",
        "count": 0,
    }
    assert (await meiduo.get_json(f"/usernames/{username}/count/"))["count"] == 0
    assert (await meiduo.get_json("/mobiles/123/count/"))["code"] == "4007"
    assert (await meiduo.get_json("/usernames/ab/count/"))["code"] == "4004"

    image_uuid, text = await meiduo.image()
    assert (await meiduo.sms(mobile, "", image_uuid))["code"] == "4003"  # missing parameter
    assert (await meiduo.sms("12345", text, image_uuid))["code"] == "4007"  # bad mobile
    wrong = "".join("3" if c != "3" else "4" for c in text)
    assert await meiduo.sms(mobile, wrong, image_uuid) == {
        "code": "4001",
        "errmsg": "图片验证码错误",
    }
    assert (await meiduo.sms(mobile, text, image_uuid))["code"] == "4001"  # used up: expired
    image_uuid, text = await meiduo.image()
    sent = await meiduo.sms(mobile, text, image_uuid)
    assert sent["code"] == "0" and sent["errmsg"] == "发送短信成功"
    image_uuid, text = await meiduo.image()
    throttled = await meiduo.sms(mobile, text, image_uuid)
    assert throttled["code"] == "4002" and 55 <= throttled["retry_after"] <= 60
    code = sandbox.inbox(mobile)[-1]["datas"][0]

    form = {
        "username": username,
        "password": PASSWORD,
        "password2": PASSWORD,
        "mobile": mobile,
        "sms_code": code,
        "allow": "on",
    }
    for change, status, text_part in [
        ({"username": ""}, 403, "缺少必传参数"),
        ({"username": "ab"}, 403, "请输入5-20个字符的用户名"),
        ({"password": "short", "password2": "short"}, 403, "请输入8-20位的密码"),
        ({"password2": "abc12345xyZ"}, 403, "两次密码不一致"),
        ({"allow": ""}, 403, "请勾选用户协议"),
        ({"mobile": "1234"}, 403, "手机号格式错误"),
        ({"sms_code": f"{(int(code) + 1) % 1_000_000:06d}"}, 400, "短信验证码错误"),
    ]:
        response = await meiduo.post_form("/register/", {**form, **change})
        assert response.code == status, (change, response.body)
        assert text_part in response.body.decode()
    no_token = await client.fetch("/register/", "POST", form_body(form))
    assert no_token.code == 403

    response = await meiduo.post_form("/register/", form)
    assert response.code == 302 and response.headers["Location"] == "/"
    assert client.cookies["username"] == username
    assert (await client.json("/api/v1.0/session"))["data"] == {"name": username}
    assert (await meiduo.get_json(f"/usernames/{username}/count/"))["count"] == 1
    assert (await meiduo.get_json(f"/mobiles/{mobile}/count/"))["count"] == 1

    logout = await client.fetch("/logout/")
    assert logout.code == 302 and logout.headers["Location"] == "/"
    assert client.cookies["username"] in ("", '""')  # cleared
    assert (await client.json("/api/v1.0/session"))["errno"] == "4101"

    wrong_login = await meiduo.post_form("/login/", {"username": username, "password": "nope12345"})
    assert wrong_login.code == 400 and "用户名或密码错误" in wrong_login.body.decode()
    by_name = await meiduo.post_form(
        "/login/?next=/orders/", {"username": username, "password": PASSWORD}
    )
    assert by_name.code == 302 and by_name.headers["Location"] == "/orders/"
    by_mobile = await meiduo.post_form(
        "/login/?next=//evil.example/", {"username": mobile, "password": PASSWORD}
    )
    assert by_mobile.code == 302 and by_mobile.headers["Location"] == "/"
    assert "Max-Age" not in by_mobile.headers.get_list("Set-Cookie")[0]  # not "remembered"


@pytest.mark.gen_test(timeout=60)
async def test_meiduo_username_taken_and_mobile_lookalike(client, sandbox, fresh_mobile):
    meiduo = MeiduoClient(client)
    taken = "taken_name"
    await insert_user(client.app.services, fresh_mobile(), taken)
    mobile = fresh_mobile()
    image_uuid, text = await meiduo.image()
    assert (await meiduo.sms(mobile, text, image_uuid))["code"] == "0"
    code = sandbox.inbox(mobile)[-1]["datas"][0]
    form = {
        "username": fresh_mobile(),  # somebody else's mobile number as a username
        "password": PASSWORD,
        "password2": PASSWORD,
        "mobile": mobile,
        "sms_code": code,
        "allow": "on",
    }
    lookalike = await meiduo.post_form("/register/", form)
    assert lookalike.code == 403 and "他人的手机号" in lookalike.body.decode()
    response = await meiduo.post_form("/register/", {**form, "username": taken})
    assert response.code == 400 and "用户名已存在" in response.body.decode()


# --- news --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_news_journey_and_error_codes(client, sandbox, fresh_mobile):
    news = NewsClient(client)
    mobile = fresh_mobile()
    assert (await client.json("/passport/image_code"))["errno"] == "4103"  # no imageCodeId
    image_id, text = await news.image()
    sms = {"mobile": mobile, "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", {**sms, "mobile": "123"}))["errno"] == "4103"
    wrong = "".join("3" if c != "3" else "4" for c in text)
    assert (await news.post("/passport/sms_code", {**sms, "image_code": wrong}))["errno"] == "4004"
    assert (await news.post("/passport/sms_code", sms))["errno"] == "4002"  # used up
    image_id, text = await news.image()
    sms = {"mobile": mobile, "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", sms))["errno"] == "0"
    code = sandbox.inbox(mobile)[-1]["datas"][0]

    register = {"mobile": mobile, "smscode": code, "password": PASSWORD}
    assert (await news.post("/passport/register", {**register, "password": "123"}))[
        "errno"
    ] == "4103"
    assert (await news.post("/passport/register", {"mobile": mobile}))["errno"] == "4103"
    bad_code = {**register, "smscode": f"{(int(code) + 1) % 1_000_000:06d}"}
    assert (await news.post("/passport/register", bad_code))["errno"] == "4004"
    assert await news.post("/passport/register", register) == {"errno": "0", "errmsg": "注册成功"}
    assert (await news.post("/passport/register", register))["errno"] == "4002"  # code used

    assert await client.json("/passport/logout") == {"errno": "0", "errmsg": "退出成功"}
    assert (await client.json("/api/v1.0/session"))["errno"] == "4101"
    wrong_login = {"mobile": mobile, "passport": "wrong-pass"}
    assert (await news.post("/passport/login", wrong_login))["errno"] == "4004"
    login = {"mobile": mobile, "passport": PASSWORD}
    assert await news.post("/passport/login", login) == {"errno": "0", "errmsg": "登录成功"}
    assert (await news.post("/passport/login", {"mobile": mobile, "password": PASSWORD}))[
        "errno"
    ] == "0"
    assert (await client.json("/api/v1.0/session"))["data"] == {"name": mobile}


@pytest.mark.gen_test(timeout=60)
async def test_news_sms_to_registered_mobile_is_dataexist(client, fresh_mobile):
    news = NewsClient(client)
    mobile = fresh_mobile()
    await insert_user(client.app.services, mobile)
    image_id, text = await news.image()
    sms = {"mobile": mobile, "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", sms))["errno"] == "4003"


@pytest.mark.gen_test(timeout=30)
async def test_families_can_be_switched_off(make_app):
    app = await make_app(families={"meiduo": False, "news": False})
    async with serving(app) as client:
        for path in ("/image_codes/abc/", "/passport/image_code?imageCodeId=abc"):
            response = await client.fetch(path)
            assert response.code == 404
            assert json.loads(response.body)["errno"] == "4002"
        assert (await client.fetch("/api/v1.0/image_codes/abc")).code == 200
