"""Voice codes: a Ronglian VoiceVerify call reads the code; same rules as SMS; quiet hours."""

from __future__ import annotations

import datetime
import json
import zoneinfo

import pytest
import requests

from sandbox.ronglian_protocol import DEFAULT_ACCOUNT_SID, DEFAULT_APP_ID, DEFAULT_AUTH_TOKEN
from services.codes.sms import quiet_seconds_left
from services.providers.ronglian import china_timestamp, sign
from services.store import keys
from tests.conftest import Client
from tests.flows import register
from tests.polling import async_wait_until


async def settled_status(client: Client, send_id: str) -> dict:
    """The send's status once its receipt has moved it past "sent"."""
    return await async_wait_until(
        lambda: client.json(f"/api/v1.0/sms_sends/{send_id}"),
        lambda status: status["data"]["status"] != "sent",
        what=f"a receipt for send {send_id}",
    )


SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
NOON = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=SHANGHAI)
TOKEN = "change-me-callback-token-00000000"


@pytest.fixture
def app(io_loop, make_app, http_port):
    """The server with its voice respUrl pointing at this test's port, clock at noon."""
    base = f"http://127.0.0.1:{http_port}"
    app = io_loop.run_sync(lambda: make_app(receipts={"public_base_url": base}))
    app.services.sms.clock = lambda: NOON
    return app


async def send_voice(client: Client, mobile: str, captcha_id: str) -> dict:
    text = await client.new_captcha(captcha_id)
    body = {"mobile": mobile, "image_code": text, "image_code_id": captcha_id, "channel": "voice"}
    return await client.json("/api/v1.0/sms_codes", "POST", body, await client.xsrf_headers())


@pytest.mark.gen_test(timeout=30)
async def test_voice_code_registers_a_user(client, sandbox, fresh_mobile, http_port):
    mobile = fresh_mobile()
    answer = await send_voice(client, mobile, "v-1")
    assert answer["errno"] == "0" and answer["data"]["retry_after"] == 60
    [call] = sandbox.inbox(mobile)
    assert call["channel"] == "voice" and call["to"] == mobile
    assert call["respUrl"] == f"http://127.0.0.1:{http_port}/callbacks/{TOKEN}/ronglian/voice"
    assert call["playTimes"] == 2 and call["lang"] == "zh"
    assert call["userData"] == answer["data"]["send_id"]
    assert len(call["verifyCode"]) == 6 and call["verifyCode"].isdigit()
    # The call result comes back to respUrl: the send is delivered (the call was answered).
    status = await settled_status(client, answer["data"]["send_id"])
    assert status["data"] == {**status["data"], "status": "delivered", "channel": "voice"}
    assert (await register(client, mobile, call["verifyCode"]))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_unanswered_call_is_failed(client, sandbox, fresh_mobile):
    sandbox.set_fault(receipt="failed", receipt_times=1)
    answer = await send_voice(client, fresh_mobile(), "v-2")
    send_id = answer["data"]["send_id"]
    status = await settled_status(client, send_id)
    assert status["data"]["status"] == "failed"
    record = await client.app.services.redis.hgetall(keys.send_record_key(send_id))
    assert record["reason"] == "not_answered"


@pytest.mark.gen_test(timeout=30)
async def test_voice_shares_the_guard_and_counts_with_sms(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    text = await client.new_captcha("v-3")
    assert (await client.send_sms(mobile, text, "v-3"))["errno"] == "0"
    refused = await send_voice(client, mobile, "v-4")
    assert refused["errno"] == "4201" and refused["data"]["reason"] == "resend_interval"
    assert [m["channel"] for m in sandbox.inbox(mobile)] == ["sms"]
    redis = client.app.services.redis
    assert await redis.get(keys.sms_mobile_hourly_key(mobile)) == "1"


@pytest.mark.gen_test(timeout=30)
async def test_quiet_hours_refuse_voice_and_keep_the_captcha(client, sandbox, fresh_mobile):
    client.app.services.sms.clock = lambda: datetime.datetime(2026, 12, 1, 23, 0, tzinfo=SHANGHAI)
    mobile = fresh_mobile()
    refused = await send_voice(client, mobile, "v-5")
    assert refused["errno"] == "4201"
    assert refused["data"] == {"reason": "voice_quiet_hours", "retry_after": 8 * 3600 + 1800}
    assert sandbox.inbox(mobile) == []
    # Nothing was taken: the same CAPTCHA still sends an SMS.
    text = await client.app.services.redis.get(keys.captcha_key("v-5"))
    assert text and (await client.send_sms(mobile, text, "v-5"))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_unknown_channel_is_paramerr(client, fresh_mobile):
    text = await client.new_captcha("v-6")
    body = {"mobile": fresh_mobile(), "image_code": text, "image_code_id": "v-6"}
    for channel in ("fax", 1, ["voice"]):
        answer = await client.json(
            "/api/v1.0/sms_codes", "POST", {**body, "channel": channel}, await client.xsrf_headers()
        )
        assert answer["errno"] == "4103"


@pytest.mark.parametrize(
    ("hour", "minute", "left"),
    [(22, 0, 9 * 3600 + 1800), (23, 59, 7 * 3600 + 31 * 60), (0, 0, 7 * 3600 + 1800),
     (7, 29, 60), (7, 30, 0), (12, 0, 0), (21, 59, 0)],
)  # fmt: skip
def test_quiet_hours_cross_midnight(hour, minute, left):
    now = datetime.datetime(2026, 12, 1, hour, minute, tzinfo=SHANGHAI)
    assert quiet_seconds_left(now, datetime.time(22, 0), datetime.time(7, 30)) == left
    assert quiet_seconds_left(now, datetime.time(8, 0), datetime.time(8, 0)) == 0


# --- the sandbox checks VoiceVerify as strictly as TemplateSMS -------------------------------


def voice_request(sandbox, body: dict, token: str = DEFAULT_AUTH_TOKEN) -> dict:
    timestamp = china_timestamp()
    sig, authorization = sign(DEFAULT_ACCOUNT_SID, token, timestamp)
    response = requests.post(
        f"{sandbox.base_url}/2013-12-26/Accounts/{DEFAULT_ACCOUNT_SID}/Calls/VoiceVerify?sig={sig}",
        data=json.dumps(body),
        headers={
            "Accept": "application/json",
            "Content-Type": "application/json;charset=utf-8",
            "Authorization": authorization,
        },
        timeout=5,
    )
    return response.json()


BODY = {"appId": DEFAULT_APP_ID, "verifyCode": "123456", "playTimes": "2", "to": "13800000009"}


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, "000000"),
        ({"appId": ""}, "111169"),
        ({"appId": "0" * 32}, "111181"),
        ({"to": "138"}, "160042"),
        ({"verifyCode": "12"}, "160031"),
        ({"verifyCode": "123456789"}, "160031"),
        ({"playTimes": "4"}, "160031"),
        ({"respUrl": "ftp://x"}, "160031"),
    ],
)
def test_sandbox_validates_voiceverify(sandbox, changes, status):
    sandbox.clear()
    assert voice_request(sandbox, {**BODY, **changes})["statusCode"] == status


def test_sandbox_voiceverify_needs_the_right_signature(sandbox):
    sandbox.clear()
    assert voice_request(sandbox, BODY, token="wrong")["statusCode"] == "111109"
    assert sandbox.inbox() == []


@pytest.mark.gen_test(timeout=30)
async def test_failed_sms_frees_the_mobile_for_a_voice_call(
    client, sandbox, fresh_mobile, http_port
):
    sandbox.set_callback(f"http://127.0.0.1:{http_port}/callbacks/{TOKEN}/ronglian/sms")
    sandbox.set_fault(receipt="failed", receipt_times=1)
    mobile = fresh_mobile()
    text = await client.new_captcha("v-7")
    sent = await client.send_sms(mobile, text, "v-7")
    redis = client.app.services.redis
    await async_wait_until(  # the failed receipt lifts the resend guard
        lambda: redis.exists(keys.sms_guard_key(mobile)),
        lambda exists: not exists,
        what="the resend guard lifted",
    )
    status = await client.json(f"/api/v1.0/sms_sends/{sent['data']['send_id']}")
    assert status["data"]["status"] == "failed"
    answer = await send_voice(client, mobile, "v-8")
    assert answer["errno"] == "0"
    assert [m["channel"] for m in sandbox.inbox(mobile)] == ["sms", "voice"]
    assert await redis.get(keys.sms_mobile_hourly_key(mobile)) == "2"  # both count
