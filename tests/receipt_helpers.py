"""Sends and receipt pushes, for the receipt tests (test_receipts.py, test_receipt_attacks.py)."""

from __future__ import annotations

import json

from tests.polling import async_wait_until

TOKEN = "change-me-callback-token-00000000"  # config.yml's development value


async def send(client, mobile: str, captcha_id: str) -> str:
    text = await client.new_captcha(captcha_id)
    body = await client.send_sms(mobile, text, captcha_id)
    assert body["errno"] == "0", body
    return body["data"]["send_id"]


async def status_of(client, send_id: str) -> dict:
    return await client.json(f"/api/v1.0/sms_sends/{send_id}")


async def wait_for_status(client, send_id: str, wanted: str) -> dict:
    """Poll the status endpoint (as the page does) until it says `wanted`."""
    return await async_wait_until(
        lambda: status_of(client, send_id),
        lambda body: body.get("data", {}).get("status") == wanted,
        what=f"send {send_id} {wanted}",
    )


async def post_receipt(client, path: str, body: bytes, content_type="application/json"):
    return await client.fetch(path, "POST", body=body, headers={"Content-Type": content_type})


def ronglian_report(message_sid: str, status: str = "0", **changes) -> bytes:
    report = {
        "action": "SMSArrived",
        "smsType": "1",
        "apiVersion": "2013-12-26",
        "content": message_sid,
        "fromNum": "13800000000",
        "dateSent": "20261201100000",
        "deliverCode": "DELIVRD" if status == "0" else "UNDELIV",
        "recvTime": "20261201100005",
        "status": status,
        "reqId": "",
        "smsCount": "1",
        **changes,
    }
    return json.dumps({"Request": report}).encode()
