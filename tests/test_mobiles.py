"""One canonical number: the spellings table, and every family's routes using it."""

from __future__ import annotations

import urllib.parse

import pytest

from services.mobiles import canonical_mobile
from tests.test_families import PASSWORD, MeiduoClient, NewsClient

# (what a person or a front-end sends, the canonical number or None for PARAMERR)
SPELLINGS = [
    ("13812345678", "13812345678"),
    ("+8613812345678", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),
    ("008613812345678", "13812345678"),
    ("0086 138 1234 5678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("86-138-1234-5678", "13812345678"),
    ("138-1234-5678", "13812345678"),
    ("(+86) 138 1234 5678", "13812345678"),
    (" 138 1234 5678\t", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"),  # full-width digits
    ("＋８６　１３８　１２３４　５６７８", "13812345678"),  # full-width plus and spaces
    ("19912345678", "19912345678"),  # 199: China Telecom
    ("16612345678", "16612345678"),  # 166: China Unicom
    ("17012345678", "17012345678"),  # 170: virtual operators (MVNO), real mobiles
    ("14712345678", "14712345678"),  # 147: data-plan mobile block that libphonenumber accepts
    ("14012345678", None),  # 140: IoT, not a person's phone
    ("14412345678", None),  # 144: IoT
    ("17412345678", None),  # 174: satellite
    ("12012345678", None),  # 12x: unassigned
    ("10012345678", None),  # 100: unassigned
    ("12345678901", None),
    ("1381234567", None),  # one digit short
    ("138123456789", None),  # one digit long
    ("+86 10 1234 5678", None),  # Beijing landline
    ("01012345678", None),  # Beijing landline, national form
    ("+852 9123 4567", None),  # Hong Kong mobile: another region
    ("+1 415 555 0100", None),
    ("138ABCD5678", None),  # letters would be read as a phone keypad: refused
    ("138 1234 5678 ext 9", None),
    ("١٣٨١٢٣٤٥٦٧٨", None),  # Arabic-Indic digits
    ("", None),
    ("+86", None),
    ("1" * 41, None),
]


@pytest.mark.parametrize(("spelled", "canonical"), SPELLINGS)
def test_canonical_mobile_table(spelled, canonical):
    assert canonical_mobile(spelled) == canonical


@pytest.mark.parametrize("value", [None, 13812345678, ["13812345678"], {"m": 1}, b"13812345678"])
def test_non_strings_are_not_mobiles(value):
    assert canonical_mobile(value) is None


@pytest.mark.gen_test(timeout=60)
async def test_meiduo_routes_use_the_canonical_number(client, sandbox, fresh_mobile):
    meiduo = MeiduoClient(client)
    mobile = fresh_mobile()
    spelled = f"+86 {mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"
    image_uuid, text = await meiduo.image()
    answer = await meiduo.sms(urllib.parse.quote(spelled), text, image_uuid)
    assert answer["code"] == "0", answer
    [message] = sandbox.inbox(mobile)
    fields = {
        "username": "meiduo_fan",
        "password": PASSWORD,
        "password2": PASSWORD,
        "mobile": f"0086{mobile}",
        "sms_code": message["datas"][0],
        "allow": "on",
    }
    response = await meiduo.post_form("/register/", fields)
    assert response.code == 302, response.body
    assert (await meiduo.get_json(f"/mobiles/{mobile}/count/"))["count"] == 1
    # Login by mobile under another spelling, then a refused IoT number.
    await client.fetch("/logout/")
    response = await meiduo.post_form("/login/", {"username": spelled, "password": PASSWORD})
    assert response.code == 302
    image_uuid, text = await meiduo.image()
    assert (await meiduo.sms("14012345678", text, image_uuid))["code"] == "4007"


@pytest.mark.gen_test(timeout=60)
async def test_news_routes_use_the_canonical_number(client, sandbox, fresh_mobile):
    news = NewsClient(client)
    await client.fetch("/api/v1.0/image_codes/bootstrap")
    mobile = fresh_mobile()
    image_id, text = await news.image()
    sms = {"mobile": f"+86{mobile}", "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", sms))["errno"] == "0"
    code = sandbox.inbox(mobile)[-1]["datas"][0]
    register = {"mobile": f"86 {mobile}", "smscode": code, "password": PASSWORD}
    assert (await news.post("/passport/register", register))["errno"] == "0"
    row = await client.app.services.db.fetch_one(
        "SELECT name, mobile FROM ih_user_profile WHERE mobile = %s", (mobile,)
    )
    assert row == (mobile, mobile)
    login = {"mobile": f"0086-{mobile}", "passport": PASSWORD}
    assert (await news.post("/passport/login", login))["errno"] == "0"
    image_id, text = await news.image()
    iot = {"mobile": "+86 144 1234 5678", "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", iot)) == {
        "errno": "4103",
        "errmsg": "手机号格式错误",
    }
