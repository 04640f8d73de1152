"""The image CAPTCHA and SMS-code endpoints, end to end against real Redis, MariaDB and sandbox."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.parse
import wave

import pytest

from services.store import keys
from tests.flows import send_with_new_captcha
from tests.users_sql import insert_user

ALPHABET = "ACEFHJKMNPRTUVWXY34679"


# --- image CAPTCHA -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_image_code_returns_uncached_jpeg_and_stores_text(client):
    response = await client.fetch("/api/v1.0/image_codes/a1b2-c3d4")
    assert response.code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.body[:3] == b"\xff\xd8\xff"  # a real JPEG
    redis = client.app.services.redis
    text = await redis.get(keys.captcha_key("a1b2-c3d4"))
    assert len(text) == 4 and set(text) <= set(ALPHABET)
    assert 170 <= await redis.ttl(keys.captcha_key("a1b2-c3d4")) <= 180


@pytest.mark.gen_test
async def test_image_code_new_request_replaces_text(client):
    texts = {await client.new_captcha("same-id") for _ in range(5)}
    assert len(texts) > 1  # random each time, not derived from the id


@pytest.mark.parametrize(
    "bad_id", ["", "a" * 65, "abc_def", "%E4%B8%AD%E6%96%87", "a%20b", "a.b", "%00"]
)
@pytest.mark.gen_test
async def test_image_code_rejects_malformed_id(client, bad_id):
    body = await client.json(f"/api/v1.0/image_codes/{bad_id}")
    assert body["errno"] == "4103"
    # Nothing stored for it (the set of registered numbers, built at start, is not its doing).
    stored = [key async for key in client.app.services.redis.scan_iter()]
    assert [key for key in stored if not key.startswith("registered:{registered}:")] == []


# --- SMS code: the happy path ------------------------------------------------------------


@pytest.mark.gen_test
async def test_sms_code_is_sent_and_stored(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    body = await send_with_new_captcha(client, mobile, "c-1")
    send_id = body["data"].pop("send_id")
    assert len(send_id) == 22  # 128 random bits, URL-safe base64
    assert body == {"errno": "0", "errmsg": "发送成功", "data": {"retry_after": 60}}
    [message] = sandbox.inbox(mobile)
    code, minutes = message["datas"]
    assert len(code) == 6 and code.isdigit() and minutes == "5"
    assert message["templateId"] == "1"
    redis = client.app.services.redis
    stored = await redis.hgetall(keys.sms_code_key(mobile))
    assert stored["tries"] == "0"
    assert code not in repr(stored)  # only an HMAC of the code is at rest
    assert 290 <= await redis.ttl(keys.sms_code_key(mobile)) <= 300
    assert 50 <= await redis.ttl(keys.sms_guard_key(mobile)) <= 60
    assert await redis.get(keys.captcha_key("c-1")) is None  # consumed


@pytest.mark.gen_test
async def test_sms_code_accepts_captcha_in_any_case(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    text = await client.new_captcha("c-case")
    body = await client.send_sms(mobile, text.lower(), "c-case")
    assert body["errno"] == "0"
    assert len(sandbox.inbox(mobile)) == 1


@pytest.mark.gen_test
async def test_sms_code_json_post_with_xsrf(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    text = await client.new_captcha("c-json")
    body = await client.json(
        "/api/v1.0/sms_codes",
        "POST",
        {"mobile": mobile, "image_code": text, "image_code_id": "c-json"},
        await client.xsrf_headers(),
    )
    assert body["errno"] == "0"
    assert len(sandbox.inbox(mobile)) == 1


# --- SMS code: refusals, in ihome's order ------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"image_code": "ABCD"},
        {"image_code_id": "c-1"},
        {"image_code": "", "image_code_id": "c-1"},
    ],
)
@pytest.mark.gen_test
async def test_sms_code_missing_parameter_is_paramerr(client, fresh_mobile, query):
    await client.new_captcha("c-1")
    path = f"/api/v1.0/sms_codes/{fresh_mobile()}?{urllib.parse.urlencode(query)}"
    body = await client.json(path)
    assert body["errno"] == "4103"
    assert await client.app.services.redis.exists(keys.captcha_key("c-1"))  # untouched


@pytest.mark.parametrize(
    "mobile",
    [
        "12800000000",
        "1380000000",
        "138000000001",
        "23800000000",
        "1380000000a",
        "１３８００００００００",
    ],
)
@pytest.mark.gen_test
async def test_sms_code_rejects_bad_mobile_and_keeps_captcha(client, sandbox, mobile):
    text = await client.new_captcha("c-2")
    body = await client.send_sms(mobile, text, "c-2")
    assert body["errno"] == "4103"
    assert await client.app.services.redis.get(keys.captcha_key("c-2")) == text
    assert sandbox.inbox() == []


@pytest.mark.gen_test
async def test_sms_code_rejects_malformed_captcha_params(client, fresh_mobile):
    await client.new_captcha("c-3")
    assert (await client.send_sms(fresh_mobile(), "A" * 17, "c-3"))["errno"] == "4103"
    assert (await client.send_sms(fresh_mobile(), "ABCD", "c_3"))["errno"] == "4103"
    assert await client.app.services.redis.exists(keys.captcha_key("c-3"))


@pytest.mark.gen_test
async def test_sms_code_unknown_captcha_is_nodata(client, sandbox, fresh_mobile):
    body = await client.send_sms(fresh_mobile(), "ABCD", "never-issued")
    assert body["errno"] == "4002"
    assert sandbox.inbox() == []


@pytest.mark.gen_test
async def test_sms_code_wrong_captcha_is_dataerr_and_captcha_is_gone(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    text = await client.new_captcha("c-4")
    wrong = "".join("3" if ch != "3" else "4" for ch in text)
    assert (await client.send_sms(mobile, wrong, "c-4"))["errno"] == "4004"
    # One attempt per CAPTCHA: even the right answer no longer works.
    assert (await client.send_sms(mobile, text, "c-4"))["errno"] == "4002"
    assert sandbox.inbox() == []
    redis = client.app.services.redis
    assert not await redis.exists(keys.sms_guard_key(mobile), keys.sms_code_key(mobile))


@pytest.mark.gen_test
async def test_sms_code_resend_within_interval_is_reqerr_with_seconds_left(
    client, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    assert (await send_with_new_captcha(client, mobile, "c-5"))["errno"] == "0"
    text = await client.new_captcha("c-6")
    query = urllib.parse.urlencode({"image_code": text, "image_code_id": "c-6"})
    response = await client.fetch(f"/api/v1.0/sms_codes/{mobile}?{query}")
    body = json.loads(response.body)
    assert response.code == 200
    assert body["errno"] == "4201"
    seconds = body["data"]["retry_after"]
    assert 55 <= seconds <= 60
    assert f"{seconds}秒" in body["errmsg"]
    assert response.headers["Retry-After"] == str(seconds)
    assert len(sandbox.inbox(mobile)) == 1


@pytest.mark.gen_test
async def test_sms_code_registered_mobile_is_dataexist_and_frees_mobile(
    client, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    await insert_user(client.app.services, mobile)
    body = await send_with_new_captcha(client, mobile, "c-7")
    assert body["errno"] == "4003"
    assert sandbox.inbox(mobile) == []
    redis = client.app.services.redis
    assert not await redis.exists(keys.sms_guard_key(mobile), keys.sms_code_key(mobile))


# --- JSON body validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b'"text"',
        b'{"mobile": 13800000000, "image_code": "ABCD", "image_code_id": "c-8"}',
        b'{"mobile": "13800000000", "image_code": ["ABCD"], "image_code_id": "c-8"}',
        b'{"mobile": "13800000000", "image_code": "ABCD", "image_code_id": {"a": 1}}',
        b"\xff\xfe",
    ],
)
@pytest.mark.gen_test
async def test_sms_code_json_rejects_malformed_body(client, raw):
    await client.new_captcha("c-8")
    response = await client.fetch(
        "/api/v1.0/sms_codes",
        "POST",
        raw,
        {**await client.xsrf_headers(), "Content-Type": "application/json"},
    )
    assert response.code == 200
    assert json.loads(response.body)["errno"] == "4103"
    assert await client.app.services.redis.exists(keys.captcha_key("c-8"))


@pytest.mark.gen_test
async def test_post_without_xsrf_token_gets_json_403(client, fresh_mobile):
    body = {"mobile": fresh_mobile(), "image_code": "ABCD", "image_code_id": "c-9"}
    response = await client.fetch("/api/v1.0/sms_codes", "POST", body)
    assert response.code == 403
    assert json.loads(response.body)["errno"] == "4201"


@pytest.mark.gen_test
async def test_unknown_route_gets_json_404(client):
    response = await client.fetch("/api/v1.0/nothing-here")
    assert response.code == 404
    assert json.loads(response.body)["errno"] == "4002"


# --- races, on standalone Redis and on a Redis Cluster (mode_client) -----------------------


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_requests_for_one_mobile_send_exactly_one_sms(
    mode_client, sandbox, fresh_mobile
):
    """50 concurrent requests for one mobile, each with its own CAPTCHA: exactly one SMS."""
    client = mode_client
    mobile = fresh_mobile()
    texts = [await client.new_captcha(f"race-{i}") for i in range(50)]
    answers = await asyncio.gather(
        *(client.send_sms(mobile, text, f"race-{i}") for i, text in enumerate(texts))
    )
    errnos = sorted(answer["errno"] for answer in answers)
    assert errnos == ["0"] + ["4201"] * 49
    assert len(sandbox.inbox(mobile)) == 1


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_uses_of_one_captcha_pass_once(mode_client, sandbox, fresh_mobile):
    """20 concurrent uses of one CAPTCHA: exactly one gets past it."""
    client = mode_client
    text = await client.new_captcha("shared")
    mobiles = [fresh_mobile() for _ in range(20)]
    answers = await asyncio.gather(*(client.send_sms(m, text, "shared") for m in mobiles))
    errnos = sorted(answer["errno"] for answer in answers)
    assert errnos == ["0"] + ["4002"] * 19
    assert len(sandbox.inbox()) == 1


@pytest.mark.gen_test(timeout=30)
async def test_audio_captcha_speaks_the_issued_captcha_without_consuming_it(client):
    text = await client.new_captcha("audio-1")
    response = await client.fetch("/api/v1.0/image_codes/audio-1/audio")
    assert response.code == 200
    assert response.headers["Content-Type"] == "audio/wav"
    assert response.headers["Cache-Control"] == "no-store"
    with wave.open(io.BytesIO(response.body)) as audio:
        assert audio.getframerate() == 8000 and audio.getnframes() > 8000  # over a second
    assert await client.app.services.redis.get(keys.captcha_key("audio-1")) == text


@pytest.mark.gen_test(timeout=30)
async def test_audio_captcha_for_unknown_id_is_nodata(client):
    assert (await client.json("/api/v1.0/image_codes/never-issued/audio"))["errno"] == "4002"
    assert (await client.json("/api/v1.0/image_codes/bad_id/audio"))["errno"] == "4103"
