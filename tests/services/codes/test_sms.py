"""SmsCodeService without HTTP: the CAPTCHA, the resend guard and the limits, the real Ronglian
client talking to the Ronglian sandbox, codes that work once, purposes, and races.

Redis mode equivalence (standalone and Cluster): tests/services/codes/test_sms_modes.py.
"""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest

from services.codes.purposes import Purpose
from services.codes.sms import VerifiedCode
from services.errors import Ret, ServiceError
from services.store import keys
from tests.flows import (
    CLIENT_IP,
    code_by_sms,
    outcome,
    pass_resend_interval,
    refusal,
    send_code,
    sms_keys_of,
    solved_captcha,
    wrong,
)

NOTHING = {"guard": None, "code": {}, "hourly": 0, "daily": 0}


# --- a code, end to end ---------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_code_goes_out_through_ronglian_and_works_once(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    sent = await send_code(services, mobile)
    assert sent.retry_after == 60 and len(sent.send_id) == 22  # 128 random bits, URL-safe
    [message] = sandbox.inbox(mobile)
    code, minutes = message["datas"]
    assert message["templateId"] == "1" and minutes == "5"
    assert len(code) == 6 and code.isdigit()
    stored = await services.redis.hgetall(keys.sms_code_key(mobile))
    assert stored["tries"] == "0" and code not in repr(stored)  # only an HMAC at rest
    assert (await services.receipts.send_status(sent.send_id))["status"] == "sent"

    verified = await services.sms.verify_code(mobile, Purpose.REGISTER, code)
    assert isinstance(verified, VerifiedCode) and verified.mobile == mobile
    assert 0 < verified.expires_at_ms - time.time() * 1000 <= 300_000  # when it would expire
    again = await refusal(services.sms.verify_code(mobile, Purpose.REGISTER, code))
    assert (again.ret, again.errmsg) == (Ret.NODATA, "短信验证码失效，请重新获取")


@pytest.mark.gen_test(timeout=30)
async def test_the_captcha_answer_is_checked_in_any_case(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    answer = await solved_captcha(services, "lower")
    await services.sms.send_code(mobile, answer.lower(), "lower", CLIENT_IP)
    assert len(sandbox.inbox(mobile)) == 1


# --- refusals change nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "captcha_id", "ret"),
    [("wrong", "c", Ret.DATAERR), ("right", "never-issued", Ret.NODATA)],
    ids=["wrong-answer", "unknown-captcha"],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_failed_captcha_sends_and_stores_nothing_and_is_used_up(
    services, sandbox, fresh_mobile, answer, captcha_id, ret
):
    mobile = fresh_mobile()
    text = await solved_captcha(services, "c")
    given = text if answer == "right" else "".join("3" if ch != "3" else "4" for ch in text)
    refused = await refusal(services.sms.send_code(mobile, given, captcha_id, CLIENT_IP))
    assert refused.ret == ret and refused.field == "image_code"
    assert sandbox.inbox() == []
    assert await sms_keys_of(services.redis, mobile) == NOTHING
    if answer == "wrong":  # one attempt per CAPTCHA: the right answer no longer works
        late = await refusal(services.sms.send_code(mobile, text, "c", CLIENT_IP))
        assert late.ret == Ret.NODATA


@pytest.mark.parametrize(
    ("mobile", "answer", "captcha_id", "options", "errmsg"),
    [
        ("", "right", "c", {}, "参数不完整"),
        ("13800000000", "", "c", {}, "参数不完整"),
        ("12800000000", "right", "c", {}, "手机号格式错误"),
        ("1380000000a", "right", "c", {}, "手机号格式错误"),
        ("13800000000", "A" * 17, "c", {}, "图片验证码格式错误"),
        ("13800000000", "right", "c_3", {}, "图片验证码编号格式错误"),
        ("13800000000", "right", "c", {"channel": "fax"}, "发送方式只能是sms或voice"),
    ],
    ids=["no-mobile", "no-answer", "bad-mobile", "letter", "long-answer", "bad-id", "channel"],
)
@pytest.mark.gen_test(timeout=30)
async def test_bad_input_is_paramerr_and_keeps_the_captcha(
    services, sandbox, mobile, answer, captcha_id, options, errmsg
):
    text = await solved_captcha(services, "c")
    given = text if answer == "right" else answer
    refused = await refusal(services.sms.send_code(mobile, given, captcha_id, CLIENT_IP, **options))
    assert (refused.ret, refused.errmsg) == (Ret.PARAMERR, errmsg)
    assert await services.redis.get(keys.captcha_key("c")) == text
    assert sandbox.inbox() == []


@pytest.mark.gen_test(timeout=30)
async def test_resend_guard_refuses_with_the_time_left_and_keeps_the_first_code(
    services, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile, captcha_id="first")
    before = await sms_keys_of(services.redis, mobile)
    refused = await refusal(send_code(services, mobile, captcha_id="second"))
    assert refused.ret == Ret.REQERR and refused.data["reason"] == "resend_interval"
    assert 1 <= refused.retry_after <= 60 and f"{refused.retry_after}秒" in refused.errmsg
    assert await sms_keys_of(services.redis, mobile) == before
    assert len(sandbox.inbox(mobile)) == 1
    await services.sms.verify_code(mobile, Purpose.REGISTER, code)  # the first code still works


@pytest.mark.parametrize(
    ("limits", "one_mobile", "reason", "window"),
    [
        ({"sms_per_mobile_hour": 2}, True, "mobile_hourly", 3600),
        ({"sms_per_mobile_hour": 10, "sms_per_mobile_day": 2}, True, "mobile_daily", 86400),
        ({"sms_per_ip_hour": 2}, False, "ip_hourly", 3600),
        ({"sms_global_per_hour": 2}, False, "global_hourly", 3600),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_full_limit_refuses_with_its_time_left_and_counts_nothing(
    make_services, sandbox, fresh_mobile, limits, one_mobile, reason, window
):
    services = await make_services(limits=limits)
    mobile = fresh_mobile()
    for i in range(2):
        await pass_resend_interval(services.redis, mobile)
        await send_code(services, mobile if one_mobile else fresh_mobile(), captcha_id=f"s{i}")
        sandbox.clear()  # the sandbox's own 30 s rule per number is not what this is about
    await pass_resend_interval(services.redis, mobile)
    before = await sms_keys_of(services.redis, mobile)
    refused = await refusal(send_code(services, mobile, captcha_id="over"))
    assert refused.ret == Ret.REQERR and refused.data["reason"] == reason
    assert window - 100 <= refused.retry_after <= window
    assert await sms_keys_of(services.redis, mobile) == before
    assert sandbox.inbox() == []
    assert await services.redis.get(keys.sms_ip_hourly_key(CLIENT_IP)) == "2"
    assert await services.redis.get(keys.sms_global_hourly_key()) == "2"


# --- races: one winner -----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_sends_to_one_mobile_send_one_sms(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    answers = [await solved_captcha(services, f"race-{i}") for i in range(20)]
    results = await asyncio.gather(
        *(
            outcome(services.sms.send_code(mobile, answer, f"race-{i}", CLIENT_IP))
            for i, answer in enumerate(answers)
        )
    )
    assert sorted(results) == ["REQERR"] * 19 + ["ok"]
    assert len(sandbox.inbox(mobile)) == 1
    assert await services.redis.get(keys.sms_mobile_hourly_key(mobile)) == "1"


@pytest.mark.gen_test(timeout=60)
async def test_one_captcha_used_concurrently_passes_once(services, sandbox, fresh_mobile):
    answer = await solved_captcha(services, "shared")
    results = await asyncio.gather(
        *(
            outcome(services.sms.send_code(fresh_mobile(), answer, "shared", CLIENT_IP))
            for _ in range(10)
        )
    )
    assert sorted(results) == ["NODATA"] * 9 + ["ok"]
    assert len(sandbox.inbox()) == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_right_code_verified_concurrently_is_used_once(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    results = await asyncio.gather(
        *(outcome(services.sms.verify_code(mobile, Purpose.REGISTER, code)) for _ in range(10))
    )
    assert sorted(results) == ["NODATA"] * 9 + ["ok"]


@pytest.mark.gen_test(timeout=30)
async def test_wrong_codes_are_counted_and_the_fifth_destroys_the_code(
    services, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    messages = []
    for step in range(1, 6):
        guess = wrong(code, step)
        refused = await refusal(services.sms.verify_code(mobile, Purpose.REGISTER, guess))
        assert refused.ret == Ret.DATAERR and refused.field == "sms_code"
        messages.append(refused.errmsg)
    assert messages == [f"短信验证码错误，还可尝试{left}次" for left in (4, 3, 2, 1)] + [
        "短信验证码错误次数过多，请重新获取"
    ]
    late = await refusal(services.sms.verify_code(mobile, Purpose.REGISTER, code))
    assert late.ret == Ret.NODATA  # even the right code: it was destroyed


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_wrong_codes_cannot_exceed_the_attempt_limit(
    services, sandbox, fresh_mobile
):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    results = await asyncio.gather(
        *(
            outcome(services.sms.verify_code(mobile, Purpose.REGISTER, wrong(code, step)))
            for step in range(1, 21)
        )
    )
    assert sorted(results) == ["DATAERR"] * 5 + ["NODATA"] * 15


# --- giving a code back ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_code_given_back_works_once_more(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    verified = await services.sms.verify_code(mobile, Purpose.REGISTER, code)
    await services.sms.give_back_code(verified)
    await services.sms.verify_code(mobile, Purpose.REGISTER, code)
    late = await refusal(services.sms.verify_code(mobile, Purpose.REGISTER, code))
    assert late.ret == Ret.NODATA


@pytest.mark.gen_test(timeout=30)
async def test_a_code_given_back_never_replaces_a_newer_one(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    old = await code_by_sms(services, sandbox, mobile, captcha_id="old")
    verified = await services.sms.verify_code(mobile, Purpose.REGISTER, old)
    await pass_resend_interval(services.redis, mobile)
    sandbox.clear()
    new = await code_by_sms(services, sandbox, mobile, captcha_id="new")
    await services.sms.give_back_code(verified)
    assert (await refusal(services.sms.verify_code(mobile, Purpose.REGISTER, old))).ret == (
        Ret.DATAERR
    )
    await services.sms.verify_code(mobile, Purpose.REGISTER, new)


# --- purposes --------------------------------------------------------------------------------


@pytest.mark.parametrize("other", [Purpose.LOGIN, Purpose.RESET_PASSWORD, Purpose.CHANGE_MOBILE])
@pytest.mark.gen_test(timeout=30)
async def test_a_code_is_bound_to_its_purpose(services, sandbox, fresh_mobile, other):
    mobile = fresh_mobile()
    code = await code_by_sms(services, sandbox, mobile)
    refused = await refusal(services.sms.verify_code(mobile, other, code))
    assert refused.ret == Ret.DATAERR  # simply a wrong code for any other purpose
    await services.sms.verify_code(mobile, Purpose.REGISTER, code)


@pytest.mark.parametrize(
    ("purpose", "registered", "user_id", "ret", "errmsg"),
    [
        (Purpose.REGISTER, True, None, Ret.DATAEXIST, "手机号已注册"),
        (Purpose.LOGIN, False, None, Ret.USERERR, "用户不存在"),
        (Purpose.RESET_PASSWORD, False, None, Ret.USERERR, "用户不存在"),
        (Purpose.CHANGE_MOBILE, False, None, Ret.SESSIONERR, "用户未登录"),
        (Purpose.CHANGE_MOBILE, True, 1, Ret.DATAEXIST, "手机号已注册"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_mobile_that_does_not_fit_the_purpose_is_refused_and_left_free(
    make_services, sandbox, fresh_mobile, purpose, registered, user_id, ret, errmsg
):
    # ihome's rules: a login code only for a registered number (no one-step SMS sign-in).
    services = await make_services(accounts={"sms_login_signs_up": False})
    mobile = fresh_mobile()
    if registered:
        await services.users.create(mobile, mobile, "x")
    refused = await refusal(send_code(services, mobile, purpose, captcha_id="p", user_id=user_id))
    assert (refused.ret, refused.errmsg) == (ret, errmsg)
    assert sandbox.inbox() == []
    assert await sms_keys_of(services.redis, mobile) == NOTHING
    fitting = Purpose.LOGIN if registered else Purpose.REGISTER
    await send_code(services, mobile, fitting, captcha_id="q")  # no guard was left behind


@pytest.mark.parametrize(
    ("value", "purpose"),
    [(None, Purpose.REGISTER), ("", Purpose.REGISTER), ("login", Purpose.LOGIN)],
)
def test_purpose_parse_defaults_to_register(value, purpose):
    assert Purpose.parse(value) is purpose


@pytest.mark.parametrize("value", ["delete_everything", ["login"], 1])
def test_purpose_parse_refuses_anything_else(value):
    with pytest.raises(ServiceError) as caught:
        Purpose.parse(value)
    assert (caught.value.ret, caught.value.errmsg) == (Ret.PARAMERR, "验证码用途错误")


# --- Ronglian failing ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_send_ronglian_refused_frees_the_mobile_at_once(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    sandbox.set_fault(times=1, mode="http500")
    refused = await refusal(send_code(services, mobile, captcha_id="f1"))
    assert (refused.ret, refused.errmsg) == (Ret.THIRDERR, "短信发送失败，请稍后重试")
    assert await sms_keys_of(services.redis, mobile) == NOTHING
    assert await services.redis.get(keys.sms_ip_hourly_key(CLIENT_IP)) == "0"
    code = await code_by_sms(services, sandbox, mobile, captcha_id="f2")  # no wait
    await services.sms.verify_code(mobile, Purpose.REGISTER, code)


@pytest.mark.gen_test(timeout=30)
async def test_a_send_of_unknown_outcome_keeps_the_guard_and_the_code(
    make_services, sandbox, fresh_mobile
):
    services = await make_services(ronglian={"request_timeout": 0.3})
    mobile = fresh_mobile()
    sandbox.set_fault(times=1, mode="hang")
    refused = await refusal(send_code(services, mobile, captcha_id="u1"))
    assert refused.ret == Ret.THIRDERR
    assert refused.data["reason"] == "send_unknown" and refused.retry_after == 60
    kept = await sms_keys_of(services.redis, mobile)
    assert kept["guard"] and kept["code"] and kept["hourly"] == kept["daily"] == 1
    again = await refusal(send_code(services, mobile, captcha_id="u2"))
    assert again.data["reason"] == "resend_interval"


@pytest.mark.gen_test(timeout=30)
async def test_voice_codes_wait_for_the_end_of_the_quiet_hours(services, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    zone = datetime.timezone(datetime.timedelta(hours=8))
    services.sms.clock = lambda: datetime.datetime(2026, 1, 1, 23, 0, tzinfo=zone)
    refused = await refusal(send_code(services, mobile, captcha_id="v", channel="voice"))
    assert refused.ret == Ret.REQERR and refused.data["reason"] == "voice_quiet_hours"
    assert refused.retry_after == 8 * 3600 + 30 * 60  # until 07:30 (voice.quiet_end)
    assert await services.redis.get(keys.captcha_key("v"))  # nothing was used up
    assert sandbox.inbox() == []
    services.sms.clock = lambda: datetime.datetime(2026, 1, 1, 12, 0, tzinfo=zone)
    await send_code(services, mobile, captcha_id="v", channel="voice")
    [call] = sandbox.inbox(mobile)
    assert call["channel"] == "voice" and call["verifyCode"].isdigit()
    await services.sms.verify_code(mobile, Purpose.REGISTER, call["verifyCode"])


@pytest.mark.gen_test(timeout=30)
async def test_the_mobile_changed_notice_goes_to_the_old_number_masked(
    services, sandbox, fresh_mobile
):
    old, new = fresh_mobile(), fresh_mobile()
    await services.sms.send_mobile_changed_notice(old, new)
    [notice] = sandbox.inbox(old)
    assert notice["templateId"] == "2"
    assert notice["datas"] == [f"{new[:3]}****{new[-4:]}"]
    sandbox.set_fault(times=1, mode="http500")
    await services.sms.send_mobile_changed_notice(old, new)  # best effort: no exception
