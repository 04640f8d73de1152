"""Consent to the 用户协议 and 隐私政策 on sign-up (issue 23 item 1): our pages send `agree`,
which must be true and is recorded (versions, time, address) with the user in one transaction;
the tutorial front-ends keep their shapes (meiduo's allow=on is recorded, ihome and news send
none: consent.require_from_ihome / require_from_news decide)."""

from __future__ import annotations

import pytest

from services.accounts.consent import MUST_AGREE
from services.errors import ServiceError
from tests.conftest import serving
from tests.flows import (
    PASSWORD,
    MeiduoClient,
    NewsClient,
    register,
    request_code,
    user_rows,
)

TERMS, PRIVACY = "2026-01-01", "2026-01-01"  # config.yml consent.*_version


async def consents(client, mobile: str) -> list[tuple]:
    """(terms_version, privacy_version, source, client_address) of the user's consents."""
    user = await client.app.services.users.by_mobile(mobile)
    if user is None:
        return []
    row = await client.app.services.db.fetch_one(
        "SELECT COUNT(*), MIN(terms_version), MIN(privacy_version), MIN(source),"
        " MIN(client_address), MIN(agreed_at) FROM ih_user_consent WHERE user_id = %s",
        (user.user_id,),
    )
    count, terms, privacy, source, address, agreed_at = row
    return [(terms, privacy, source, address)] * count if agreed_at else []


async def consent_rows(client) -> int:
    return (await client.app.services.db.fetch_one("SELECT COUNT(*) FROM ih_user_consent"))[0]


@pytest.mark.gen_test(timeout=60)
async def test_our_page_registers_with_agree_true_and_the_consent_is_recorded(
    client, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    assert (await register(client, mobile, code, agree=True))["errno"] == "0"
    assert await consents(client, mobile) == [(TERMS, PRIVACY, "ihome", "127.0.0.1")]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("agree", [False, "true", 1, "on", [], {}])
async def test_agree_other_than_true_is_refused_and_changes_nothing(
    client, sandbox, fresh_mobile, agree
):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    answer = await register(client, mobile, code, agree=agree)
    assert answer == {"errno": "4103", "errmsg": MUST_AGREE}
    assert await user_rows(client, mobile) == 0 and await consent_rows(client) == 0
    # Nothing was used up: the same code registers once the box is ticked.
    assert (await register(client, mobile, code, agree=True))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_the_ihome_front_end_without_agree_registers_unrecorded_by_default(
    client, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    code = await request_code(client, sandbox, mobile)
    assert (await register(client, mobile, code))["errno"] == "0"
    assert await user_rows(client, mobile) == 1 and await consent_rows(client) == 0


@pytest.mark.gen_test(timeout=60)
async def test_require_from_ihome_refuses_a_sign_up_without_agree(make_app, sandbox, fresh_mobile):
    app = await make_app(consent={"require_from_ihome": True})
    async with serving(app) as client:
        mobile = fresh_mobile()
        code = await request_code(client, sandbox, mobile)
        answer = await register(client, mobile, code)
        assert answer == {"errno": "4103", "errmsg": MUST_AGREE}
        assert await user_rows(client, mobile) == 0
        assert (await register(client, mobile, code, agree=True))["errno"] == "0"
        assert len(await consents(client, mobile)) == 1


async def news_code(news: NewsClient, sandbox, mobile: str) -> str:
    image_id, text = await news.image()
    sms = {"mobile": mobile, "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", sms))["errno"] == "0"
    return sandbox.inbox(mobile)[-1]["datas"][0]


@pytest.mark.gen_test(timeout=60)
async def test_news_keeps_its_shape_and_require_from_news_decides(make_app, sandbox, fresh_mobile):
    app = await make_app(consent={"require_from_news": True})
    async with serving(app) as client:
        news = NewsClient(client)
        await client.xsrf_headers()
        mobile = fresh_mobile()
        code = await news_code(news, sandbox, mobile)
        body = {"mobile": mobile, "smscode": code, "password": PASSWORD}
        assert await news.post("/passport/register", body) == {
            "errno": "4103",
            "errmsg": MUST_AGREE,
        }
        assert await user_rows(client, mobile) == 0
        assert (await news.post("/passport/register", {**body, "agree": True}))["errno"] == "0"
        assert await consents(client, mobile) == [(TERMS, PRIVACY, "news", "127.0.0.1")]
    # Not required (the default): the news front-end registers as it always did.
    async with serving(await make_app()) as client:
        news = NewsClient(client)
        await client.xsrf_headers()
        mobile = fresh_mobile()
        code = await news_code(news, sandbox, mobile)
        body = {"mobile": mobile, "smscode": code, "password": PASSWORD}
        assert (await news.post("/passport/register", body))["errno"] == "0"
        assert await consents(client, mobile) == []


@pytest.mark.gen_test(timeout=60)
async def test_meiduo_allow_on_is_its_consent_and_is_recorded(client, sandbox, fresh_mobile):
    meiduo = MeiduoClient(client)
    mobile = fresh_mobile()
    image_uuid, text = await meiduo.image()
    assert (await meiduo.sms(mobile, text, image_uuid))["code"] == "0"
    code = sandbox.inbox(mobile)[-1]["datas"][0]
    form = {
        "username": "consent_user",
        "password": "abc12345xyz",
        "password2": "abc12345xyz",
        "mobile": mobile,
        "sms_code": code,
    }
    refused = await meiduo.post_form("/register/", form)  # no allow: meiduo's own refusal
    assert refused.code == 403 and "请勾选用户协议" in refused.body.decode()
    assert await user_rows(client, mobile) == 0 and await consent_rows(client) == 0
    response = await meiduo.post_form("/register/", {**form, "allow": "on"})
    assert response.code == 302
    assert await consents(client, mobile) == [(TERMS, PRIVACY, "meiduo", "127.0.0.1")]


@pytest.mark.gen_test(timeout=60)
async def test_the_consent_hook_for_other_sign_up_routes(client, fresh_mobile):
    """ConsentPolicy.require + UserRepository.create(consent=): the API another sign-up route
    (one-step SMS sign-in) calls; the user and its consent are written together."""
    services = client.app.services
    with pytest.raises(ServiceError) as refused:
        services.consent.require(False, "ihome", "192.0.2.1")
    assert refused.value.errmsg == MUST_AGREE and refused.value.field == "agree"
    assert services.consent.require(None, "ihome", "192.0.2.1") is None
    with pytest.raises(ServiceError):
        services.consent.require(None, "meiduo", "192.0.2.1")
    consent = services.consent.require(True, "ihome", "2001:db8::1")
    assert consent is not None and consent.terms_version == TERMS
    mobile = fresh_mobile()
    await services.users.create(mobile, mobile, "x", consent=consent)
    assert await consents(client, mobile) == [(TERMS, PRIVACY, "ihome", "2001:db8::1")]
    # A user whose insert fails (the mobile is taken) leaves no consent behind.
    with pytest.raises(ServiceError):  # DATAEXIST
        await services.users.create("other_name", mobile, "y", consent=consent)
    assert await consent_rows(client) == 1
