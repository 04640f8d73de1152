"""Attacks through delivery receipts (issue 27): failed receipts freeing a mobile back to back
(#6), bodies that do not parse (#7). Helpers for sends and pushes:
tests/receipt_helpers.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import zoneinfo

import pytest
import tornado.testing

from services.store import keys
from tests.conftest import serving
from tests.flows import metric, register
from tests.polling import async_wait_until
from tests.receipt_helpers import (
    TOKEN,
    post_receipt,
    ronglian_report,
    send,
    status_of,
    wait_for_status,
)

# --- issue 27 #6: a failed receipt frees a mobile once per code, never back to back -------

NOON = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
VOICE_PATH = f"/callbacks/{TOKEN}/ronglian/voice"
SMS_PATH = f"/callbacks/{TOKEN}/ronglian/sms"


@contextlib.asynccontextmanager
async def serving_receipts(make_app, sandbox):
    """The app on a port it knew when it was built, so that the sandbox pushes SMS receipts
    and voice call results (the call's respUrl) back to it; its clock at noon (calls allowed)."""
    bound = tornado.testing.bind_unused_port()
    base = f"http://127.0.0.1:{bound[1]}"
    try:
        app = await make_app(receipts={"public_base_url": base})
    except BaseException:
        bound[0].close()
        raise
    app.services.sms.clock = lambda: NOON
    sandbox.set_callback(f"{base}{SMS_PATH}")
    async with serving(app, bound) as client:
        yield client


async def ask(client, mobile: str, channel: str, captcha_id: str) -> dict:
    """POST /api/v1.0/sms_codes for an SMS or a call, with a freshly solved CAPTCHA."""
    text = await client.new_captcha(captcha_id)
    body = {"mobile": mobile, "image_code": text, "image_code_id": captcha_id, "channel": channel}
    return await client.json("/api/v1.0/sms_codes", "POST", body, await client.xsrf_headers())


async def receipt_counts(client, status: str) -> float:
    text = (await client.fetch("/metrics")).body.decode()
    return sum(
        metric(text, "smsreg_receipts_total", provider="ronglian", channel=channel, status=status)
        for channel in ("sms", "voice")
    )


async def receipts_applied(client, count: int) -> None:
    """Wait until `count` receipts have been applied in full: the guard lifted or kept (the
    status turns failed one round trip before that)."""

    async def applied() -> float:
        return await receipt_counts(client, "delivered") + await receipt_counts(client, "failed")

    await async_wait_until(applied, lambda n: n >= count, what=f"{count} receipts applied")


def call_result(call_sid: str, state: str) -> bytes:
    """Ronglian's VoiceVerify result push: state 0 answered, 1 not answered, 2 call failed."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Request><action>VoiceCode</action>'
        f"<number>13800000000</number><callSid>{call_sid}</callSid><state>{state}</state>"
        "<duration>0</duration></Request>"
    ).encode()


@pytest.mark.gen_test(timeout=60)
async def test_failed_receipts_do_not_free_a_mobile_back_to_back(
    make_mode_app, sandbox, fresh_mobile
):
    """The attack: alternate SMS and voice, let every SMS fail and every call ring unanswered,
    ask again the moment each receipt is in. Before: 5 sends or calls in about 5 s. Now one
    extra send per code: the failed SMS frees the mobile (so the call can come at once), the
    unanswered call frees nothing, and another failure within the code's lifetime frees
    nothing either."""
    sandbox.set_fault(receipt="failed")  # every SMS fails, every call rings unanswered
    async with serving_receipts(make_mode_app, sandbox) as client:
        mobile = fresh_mobile()
        redis = client.app.services.redis
        captcha_ids = (f"bomb-{n}" for n in range(100))

        async def attempt(channel: str) -> dict:
            return await ask(client, mobile, channel, next(captcha_ids))

        assert (await attempt("sms"))["errno"] == "0"
        await receipts_applied(client, 1)
        assert not await redis.exists(keys.sms_guard_key(mobile))  # freed: the call may come
        call = await attempt("voice")
        assert call["errno"] == "0"
        await receipts_applied(client, 2)
        record = await redis.hgetall(keys.send_record_key(call["data"]["send_id"]))
        assert record["status"] == "failed" and record["reason"] == "not_answered"
        for channel in ("sms", "voice", "sms", "voice"):
            refused = await attempt(channel)
            assert refused["errno"] == "4201" and refused["data"]["reason"] == "resend_interval"

        assert [m["channel"] for m in sandbox.inbox(mobile)] == ["sms", "voice"]

        # The guard runs its 60 s (deleted here, and the sandbox's own 30 s rule forgotten);
        # the next SMS fails too, within the lifetime of the code the early send delivered:
        # it frees nothing.
        await redis.delete(keys.sms_guard_key(mobile))
        sandbox.clear()
        third = await attempt("sms")
        assert third["errno"] == "0"
        await receipts_applied(client, 3)
        assert (await status_of(client, third["data"]["send_id"]))["data"]["status"] == "failed"
        assert await redis.exists(keys.sms_guard_key(mobile))
        for channel in ("voice", "sms"):
            assert (await attempt(channel))["data"]["reason"] == "resend_interval"
        assert [m["channel"] for m in sandbox.inbox(mobile)] == ["sms"]
        assert await redis.get(keys.sms_mobile_hourly_key(mobile)) == "3"
        ttl = await redis.ttl(keys.sms_freed_key(mobile))
        assert 0 < ttl <= client.app.services.config.sms.code_ttl


@pytest.mark.gen_test(timeout=60)
async def test_a_failed_sms_still_gets_the_voice_call_at_once(make_mode_app, sandbox, fresh_mobile):
    """The defence keeps the reason for freeing: the user whose SMS failed is called at once,
    answers, and registers with the code the call read out."""
    sandbox.set_fault(receipt="failed", receipt_times=1)  # the SMS fails; the call is answered
    async with serving_receipts(make_mode_app, sandbox) as client:
        mobile = fresh_mobile()
        sms = await ask(client, mobile, "sms", "legit-1")
        assert sms["errno"] == "0"
        await wait_for_status(client, sms["data"]["send_id"], "failed")
        await receipts_applied(client, 1)
        call = await ask(client, mobile, "voice", "legit-2")
        assert call["errno"] == "0", call
        await wait_for_status(client, call["data"]["send_id"], "delivered")
        code = sandbox.inbox(mobile)[-1]["verifyCode"]
        assert (await register(client, mobile, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_failed_receipts_in_two_processes_free_the_mobile_once(
    make_mode_app, sandbox, fresh_mobile
):
    """A call that could not be placed frees the mobile; its result pushed 20 times at once to
    two processes (two apps, one Redis) frees it once, and the next send's failure, pushed the
    same way, frees nothing: the first free is decided with its marker in one atomic step."""
    sandbox.set_fault(receipt="never")  # this test pushes the results itself
    async with (
        serving(await make_mode_app()) as one,
        serving(await make_mode_app()) as two,
    ):
        mobile = fresh_mobile()
        redis = one.app.services.redis
        one.app.services.sms.clock = lambda: NOON

        async def push_until_taken(client, path: str, body: bytes, content_type: str) -> int:
            # As the provider does: a 503 (the store failed for a moment; a busy machine's
            # cluster client can) is pushed again. Anything else must be a 200 at once.
            for _ in range(5):
                answer = await post_receipt(client, path, body, content_type)
                if answer.code != 503:
                    return answer.code
            return 503

        async def push_everywhere(path: str, body: bytes, content_type: str) -> None:
            answers = await asyncio.gather(
                *(
                    push_until_taken(c, path, body, content_type)
                    for c in (one, two)
                    for _ in range(10)
                )
            )
            assert answers == [200] * 20

        assert (await ask(one, mobile, "voice", "race-1"))["errno"] == "0"
        [call] = sandbox.inbox(mobile)
        await push_everywhere(VOICE_PATH, call_result(call["callSid"], "2"), "text/plain")
        assert not await redis.exists(keys.sms_guard_key(mobile))  # call_failed frees, once
        assert await redis.exists(keys.sms_freed_key(mobile))

        sms = await ask(two, mobile, "sms", "race-2")
        assert sms["errno"] == "0"
        sid = sandbox.inbox(mobile)[-1]["smsMessageSid"]
        await push_everywhere(SMS_PATH, ronglian_report(sid, status="1"), "application/json")
        assert (await status_of(two, sms["data"]["send_id"]))["data"]["status"] == "failed"
        assert await redis.exists(keys.sms_guard_key(mobile))
        refused = await ask(one, mobile, "voice", "race-3")
        assert refused["data"]["reason"] == "resend_interval"
        # Each result was applied once, whichever process took it; the rest were duplicates.
        assert await receipt_counts(one, "failed") + await receipt_counts(two, "failed") == 2
        duplicates = await receipt_counts(one, "duplicate") + await receipt_counts(two, "duplicate")
        assert duplicates >= 38  # more if a push was answered 503 after it was applied


@pytest.mark.gen_test(timeout=30)
async def test_unanswered_call_frees_nothing_call_failed_does(make_app, sandbox, fresh_mobile):
    """State 1 (not answered: the phone rang) keeps the guard; state 2 (the call could not be
    placed) lifts it, like a failed SMS."""
    sandbox.set_fault(receipt="never")
    async with serving(await make_app()) as client:
        client.app.services.sms.clock = lambda: NOON
        redis = client.app.services.redis
        for state, freed in (("1", False), ("2", True)):
            mobile = fresh_mobile()
            assert (await ask(client, mobile, "voice", f"state-{state}"))["errno"] == "0"
            [call] = sandbox.inbox(mobile)
            answer = await post_receipt(
                client, VOICE_PATH, call_result(call["callSid"], state), "text/plain"
            )
            assert answer.code == 200
            assert await redis.exists(keys.sms_guard_key(mobile)) != freed
            assert await redis.exists(keys.sms_freed_key(mobile)) == freed
            again = await ask(client, mobile, "sms", f"state-{state}-sms")
            assert (again["errno"] == "0") == freed


# --- issue 27 #7: a body that does not parse is a 400 that changes nothing ----------------

DEEP_JSON = b"[" * 5000 + b"]" * 5000
DEEP_XML = b"<Request>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</Request>"


def with_dtd(document: str, sid: str) -> bytes:
    """`document` (a <Request> using &sid; and &lol9;) after a DTD: a billion laughs, and an
    entity for the message id, so that the push would be a valid failed receipt if its
    entities were expanded."""
    lols = "".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "lol"}">' for n in range(1, 10)
    )
    dtd = f'<!DOCTYPE Request [{lols}<!ENTITY sid "{sid}">]>'
    return f'<?xml version="1.0"?>{dtd}{document}'.encode()


def hostile_bodies(sid: str, route: str) -> list[bytes]:
    """Bodies for `route` that do not parse; each would fail the send of `sid` if it did."""
    if route == "aliyun/sms":
        report = {"biz_id": sid, "success": False, "err_code": "X"}
        return [
            DEEP_JSON,
            json.dumps([report]).encode().replace(b'"X"', DEEP_JSON),
            json.dumps([{**report, "err_code": "\ud800"}]).encode(),  # a lone surrogate
            b"<Request/>",
        ]
    if route == "ronglian/sms":
        return [
            DEEP_JSON,
            ronglian_report(sid, status="1", deliverCode="X").replace(b'"X"', DEEP_JSON),
            ronglian_report(sid, status="1", deliverCode="\udfff"),
            DEEP_XML,
            with_dtd(
                "<Request><action>SMSArrived</action><content>&sid;</content>"
                "<status>1</status><deliverCode>&lol9;</deliverCode></Request>",
                sid,
            ),
        ]
    return [  # ronglian/voice
        DEEP_XML,
        DEEP_JSON,
        with_dtd(
            "<Request><action>VoiceCode</action><callSid>&sid;</callSid><state>2</state>"
            "<duration>&lol9;</duration></Request>",
            sid,
        ),
        b'<?xml version="1.0" encoding="klingon"?>' + call_result(sid, "2").split(b"?>", 1)[1],
        b'<?xml version="1.0" encoding="utf-7"?>' + call_result(sid, "2").split(b"?>", 1)[1],
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + call_result("&x;", "2").split(b"?>", 1)[1],
    ]


async def assert_unparsed_pushes_change_nothing(client, route: str, sid: str, send_id: str):
    redis = client.app.services.redis
    mobile = (await redis.hgetall(keys.send_record_key(send_id)))["mobile"]
    for body in hostile_bodies(sid, route):
        answer = await post_receipt(client, f"/callbacks/{TOKEN}/{route}", body, "text/plain")
        assert answer.code == 400, (route, body[:80], answer.code)
        assert json.loads(answer.body)["error"].startswith("malformed receipt"), body[:80]
    assert (await status_of(client, send_id))["data"]["status"] == "sent"
    assert await redis.exists(keys.sms_guard_key(mobile))
    assert not await redis.exists(keys.sms_freed_key(mobile))
    assert await receipt_counts(client, "failed") == 0


@pytest.mark.gen_test(timeout=30)
async def test_unparseable_ronglian_pushes_are_400_and_change_nothing(
    client, sandbox, fresh_mobile
):
    """5,000-deep JSON was an uncaught RecursionError (a 500, which the provider retries);
    XML with a DTD (billion laughs, an external entity), 5,000-deep XML, an encoding Python
    lacks and a lone surrogate are refused the same way, on every Ronglian route."""
    mobile = fresh_mobile()
    send_id = await send(client, mobile, "deep-1")
    sid = sandbox.inbox(mobile)[0]["smsMessageSid"]
    for route in ("ronglian/sms", "ronglian/voice"):  # a voice result matches any Ronglian id
        await assert_unparsed_pushes_change_nothing(client, route, sid, send_id)
    # The same send still takes a well-formed receipt.
    assert (await post_receipt(client, SMS_PATH, ronglian_report(sid))).code == 200
    assert (await status_of(client, send_id))["data"]["status"] == "delivered"


@pytest.mark.gen_test(timeout=30)
async def test_unparseable_aliyun_pushes_are_400_and_change_nothing(
    make_app, aliyun_sandbox, fresh_mobile
):
    app = await make_app(providers=("aliyun",))
    async with serving(app) as client:
        mobile = fresh_mobile()
        send_id = await send(client, mobile, "deep-2")
        biz_id = aliyun_sandbox.inbox(mobile)[0]["BizId"]
        await assert_unparsed_pushes_change_nothing(client, "aliyun/sms", biz_id, send_id)


def test_every_callback_route_has_a_parser_that_refuses_deep_bodies():
    """A new callback route gets a parser from PARSERS: each refuses deep JSON and deep XML
    with MalformedReceipt (400), never a RecursionError."""
    from handlers.callbacks import PARSERS
    from services.providers.pushes import MalformedReceipt

    for parse in PARSERS.values():
        for body in (DEEP_JSON, DEEP_XML, b"{" * 100_000, b"<Request>" + b"<a>" * 100_000):
            with pytest.raises(MalformedReceipt):
                parse(body)
