"""Delivery receipts: send ids, the providers' status pushes, the status endpoint, the attacks
(issue 27's: tests/test_receipt_attacks.py)."""

from __future__ import annotations

import json

import pytest

from services.store import keys
from tests.conftest import serving
from tests.flows import metric
from tests.polling import async_wait_until
from tests.receipt_helpers import (
    TOKEN,
    post_receipt,
    ronglian_report,
    send,
    status_of,
    wait_for_status,
)


@pytest.mark.gen_test(timeout=30)
async def test_ronglian_receipt_turns_the_send_delivered(make_app, sandbox, fresh_mobile):
    app = await make_app()
    async with serving(app) as client:
        sandbox.set_callback(f"{client.base_url}/callbacks/{TOKEN}/ronglian/sms")
        mobile = fresh_mobile()
        send_id = await send(client, mobile, "rc-1")
        body = await wait_for_status(client, send_id, "delivered")
        data = body["data"]
        assert data["status"] == "delivered" and data["channel"] == "sms"
        assert data["updated_at"].endswith("Z")
        assert set(data) == {"status", "channel", "updated_at"}  # no mobile, no code
        redis = client.app.services.redis
        record = await redis.hgetall(keys.send_record_key(send_id))
        assert record["provider"] == "ronglian" and record["reason"] == "DELIVRD"
        assert record["message_id"] == sandbox.inbox(mobile)[0]["smsMessageSid"]
        assert (
            0 < await redis.ttl(keys.send_record_key(send_id)) <= app.services.config.sms.code_ttl
        )
        exposition = (await client.fetch("/metrics")).body.decode()
    assert (
        metric(
            exposition,
            "smsreg_receipts_total",
            provider="ronglian",
            channel="sms",
            status="delivered",
        )
        == 1
    )
    assert (
        metric(
            exposition,
            "smsreg_delivery_latency_seconds_count",
            provider="ronglian",
            channel="sms",
        )
        == 1
    )


@pytest.mark.gen_test(timeout=30)
async def test_failed_receipt_turns_the_send_failed(make_app, sandbox, fresh_mobile):
    app = await make_app()
    sandbox.set_fault(receipt="failed", receipt_times=1)
    async with serving(app) as client:
        sandbox.set_callback(f"{client.base_url}/callbacks/{TOKEN}/ronglian/sms")
        send_id = await send(client, fresh_mobile(), "rc-2")
        assert (await wait_for_status(client, send_id, "failed"))["data"]["status"] == "failed"
        record = await client.app.services.redis.hgetall(keys.send_record_key(send_id))
        assert record["reason"] == "UNDELIV"


@pytest.mark.gen_test(timeout=30)
async def test_aliyun_receipt_and_a_repeated_push_change_it_once(
    make_app, aliyun_sandbox, fresh_mobile
):
    app = await make_app(providers=("aliyun",))
    aliyun_sandbox.set_fault(receipt="twice", receipt_times=1)
    async with serving(app) as client:
        aliyun_sandbox.set_callback(f"{client.base_url}/callbacks/{TOKEN}/aliyun/sms")
        send_id = await send(client, fresh_mobile(), "rc-3")
        assert (await wait_for_status(client, send_id, "delivered"))["data"]["status"] == (
            "delivered"
        )
        labels = {"provider": "aliyun", "channel": "sms"}

        async def exposition_text() -> str:
            return (await client.fetch("/metrics")).body.decode()

        # The second copy arrives: counted as a duplicate, nothing changes.
        exposition = await async_wait_until(
            exposition_text,
            lambda text: metric(text, "smsreg_receipts_total", status="duplicate", **labels),
            what="the duplicate receipt counted",
        )
        duplicates = metric(exposition, "smsreg_receipts_total", status="duplicate", **labels)
        assert duplicates == 1
        assert metric(exposition, "smsreg_receipts_total", status="delivered", **labels) == 1
        record = await client.app.services.redis.hgetall(keys.send_record_key(send_id))
        assert record["provider"] == "aliyun" and record["reason"] == "DELIVERED"


@pytest.mark.gen_test(timeout=30)
async def test_wrong_token_malformed_body_and_replay_change_nothing(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    send_id = await send(client, mobile, "rc-4")
    sid = sandbox.inbox(mobile)[0]["smsMessageSid"]
    path = f"/callbacks/{TOKEN}/ronglian/sms"

    wrong = await post_receipt(
        client, "/callbacks/not-the-token-0000/ronglian/sms", ronglian_report(sid)
    )
    assert wrong.code == 403
    for malformed in [
        b"not json",
        b"[]",
        json.dumps({"Request": "x"}).encode(),
        ronglian_report(sid, action="SMSInbound"),
        ronglian_report(sid, status="7"),
        ronglian_report("../../etc"),
        ronglian_report(sid, content=None),
        b"<Request><action>SMSArrived</action>",
    ]:
        answer = await post_receipt(client, path, malformed)
        assert answer.code == 400, malformed
        assert json.loads(answer.body)["error"].startswith("malformed receipt")
    assert (await status_of(client, send_id))["data"]["status"] == "sent"

    accepted = await post_receipt(client, path, ronglian_report(sid, status="1"))
    assert accepted.code == 200 and json.loads(accepted.body) == {"statusCode": "000000"}
    assert (await status_of(client, send_id))["data"]["status"] == "failed"
    replay = await post_receipt(client, path, ronglian_report(sid, status="0"))
    assert replay.code == 200  # acknowledged, so the provider stops pushing; nothing changes
    assert (await status_of(client, send_id))["data"]["status"] == "failed"
    # A receipt for a message we never sent is acknowledged and ignored.
    assert (await post_receipt(client, path, ronglian_report("f" * 32))).code == 200


@pytest.mark.gen_test(timeout=30)
async def test_xml_receipts_get_xml_answers(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    send_id = await send(client, mobile, "rc-5")
    sid = sandbox.inbox(mobile)[0]["smsMessageSid"]
    xml = (
        "<?xml version='1.0' encoding='UTF-8'?><Request><action>SMSArrived</action>"
        f"<content>{sid}</content><status>0</status><deliverCode>DELIVRD</deliverCode></Request>"
    ).encode()
    answer = await post_receipt(client, f"/callbacks/{TOKEN}/ronglian/sms", xml, "text/plain")
    assert answer.code == 200 and b"<statuscode>000000</statuscode>" in answer.body
    assert (await status_of(client, send_id))["data"]["status"] == "delivered"


@pytest.mark.gen_test(timeout=30)
async def test_aliyun_malformed_reports_are_400(client):
    path = f"/callbacks/{TOKEN}/aliyun/sms"
    for body in [b"{}", b"[]", b'[{"biz_id": "1^0"}]', b'[{"biz_id": 5, "success": true}]']:
        assert (await post_receipt(client, path, body)).code == 400
    ok = await post_receipt(client, path, b'[{"biz_id": "123^0", "success": true}]')
    assert ok.code == 200 and json.loads(ok.body) == {"code": 0, "msg": "接收成功"}


@pytest.mark.gen_test(timeout=30)
async def test_source_allow_list_refuses_other_addresses(make_app, sandbox, fresh_mobile):
    app = await make_app(receipts={"allowed_sources": "10.0.0.0/8"})
    async with serving(app) as client:
        mobile = fresh_mobile()
        send_id = await send(client, mobile, "rc-6")
        sid = sandbox.inbox(mobile)[0]["smsMessageSid"]
        answer = await post_receipt(
            client, f"/callbacks/{TOKEN}/ronglian/sms", ronglian_report(sid)
        )
        assert answer.code == 403
        assert (await status_of(client, send_id))["data"]["status"] == "sent"


@pytest.mark.gen_test(timeout=30)
async def test_status_of_unknown_or_malformed_send_ids(client):
    assert (await status_of(client, "A" * 22))["errno"] == "4002"
    assert (await status_of(client, "short"))["errno"] == "4103"
    assert (await status_of(client, "%3Cscript%3E" + "a" * 20))["errno"] == "4103"


def test_voice_call_results_parse_to_receipts():
    from services.providers.pushes import MalformedReceipt
    from services.providers.ronglian import parse_ronglian_voice

    def call(state: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?><Request><action>VoiceCode</action>'
            "<number>13800000000</number><callSid>1307241452320369000100030000002f</callSid>"
            f"<state>{state}</state><duration>30</duration></Request>"
        ).encode()

    [answered] = parse_ronglian_voice(call("0"))
    assert answered.delivered and answered.message_id == "1307241452320369000100030000002f"
    assert [r.reason for s in "12" for r in parse_ronglian_voice(call(s))] == [
        "not_answered",
        "call_failed",
    ]
    for bad in (call("9"), b"<Request><action>SMSArrived</action></Request>", b"{}"):
        with pytest.raises(MalformedReceipt):
            parse_ronglian_voice(bad)


@pytest.mark.gen_test(timeout=30)
async def test_late_receipt_arrives_and_a_never_receipt_leaves_sent(
    make_app, sandbox, fresh_mobile
):
    app = await make_app()
    async with serving(app) as client:
        sandbox.set_callback(f"{client.base_url}/callbacks/{TOKEN}/ronglian/sms")
        sandbox.set_fault(receipt="never", receipt_times=1)
        never = await send(client, fresh_mobile(), "rc-7")
        sandbox.set_fault(receipt="late", receipt_times=1, late_ms=500)
        late = await send(client, fresh_mobile(), "rc-8")
        assert (await wait_for_status(client, late, "delivered"))["data"]["status"] == ("delivered")
        # The late report was due at least 500 ms after the other would have been: that one
        # never came, and the send stays "sent" (the page stops polling after 30 s).
        assert (await status_of(client, never))["data"]["status"] == "sent"


@pytest.mark.gen_test(timeout=30)
async def test_a_full_aliyun_batch_is_accepted(make_app, aliyun_sandbox, fresh_mobile):
    app = await make_app(providers=("aliyun",))
    async with serving(app) as client:
        mobile = fresh_mobile()
        send_id = await send(client, mobile, "rc-9")
        biz_id = aliyun_sandbox.inbox(mobile)[0]["BizId"]
        filler = {"success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功"}
        reports = [
            {**filler, "biz_id": f"{n}^0", "phone_number": "1380000****"} for n in range(999)
        ]
        reports.append({**filler, "biz_id": biz_id, "phone_number": mobile})
        body = json.dumps(reports, ensure_ascii=False).encode()
        assert len(body) > app.services.config.server.max_body_size
        answer = await post_receipt(client, f"/callbacks/{TOKEN}/aliyun/sms", body)
        assert answer.code == 200
        assert (await status_of(client, send_id))["data"]["status"] == "delivered"
