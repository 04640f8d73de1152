"""What sends cost (services/codes/costs.py): billed parts and minutes, the cost metric, and the
hourly budget in yuan, on the real services, Redis and sandboxes."""

from __future__ import annotations

import pytest

from services.codes.costs import SmsPricing, call_minutes, sms_parts, to_units
from services.config import CostsConfig
from services.errors import Ret
from services.providers.base import Channel
from services.providers.ronglian import parse_ronglian_voice
from services.store import keys
from tests.flows import metric, refusal, send_code

NO_QUIET_HOURS = {"quiet_start": "00:00", "quiet_end": "00:00"}


@pytest.mark.parametrize(
    ("length", "parts"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_sms_parts_as_the_providers_bill(length, parts):
    assert sms_parts("验" * length) == parts


@pytest.mark.parametrize(("seconds", "minutes"), [(None, 1), (0, 1), (1, 1), (60, 1), (61, 2)])
def test_call_minutes_are_started_minutes(seconds, minutes):
    assert call_minutes(seconds) == minutes


def test_the_priced_text_is_what_each_provider_sends():
    costs = CostsConfig(ronglian_sms_text="【x】码{1}，{2}分钟。\n\n@{3} #{1}")
    pricing = SmsPricing(costs, aliyun_sign="签名", webotp_domain="a.example", ttl_minutes=5)
    assert pricing.texts["ronglian"] == "【x】码000000，5分钟。\n\n@a.example #000000"
    assert pricing.texts["aliyun"] == "【签名】您的验证码为：000000，请勿泄露于他人！"
    long_template = CostsConfig(ronglian_sms_text="字" * 65 + "{1}")  # 71 characters
    pricing = SmsPricing(long_template, aliyun_sign="s", webotp_domain="", ttl_minutes=5)
    assert pricing.parts("ronglian") == 2
    assert pricing.send_cost("ronglian", Channel.SMS) == pytest.approx(0.10)
    assert pricing.send_cost("aliyun", Channel.VOICE) == 0  # Aliyun carries no voice
    assert pricing.most_expensive(["ronglian", "aliyun"], Channel.SMS) == pytest.approx(0.10)


async def cost_of(services, provider: str, channel: str) -> float:
    text = services.metrics.exposition()[0].decode()
    return metric(text, "smsreg_sms_cost_yuan_total", provider=provider, channel=channel)


@pytest.mark.gen_test
async def test_a_send_costs_its_parts_and_is_charted(make_services, fresh_mobile):
    long_text = "字" * 65 + "{1}"  # 71 characters with the code: a long message of 2 parts
    services = await make_services(costs={"ronglian_sms_text": long_text})
    await send_code(services, fresh_mobile())
    assert await cost_of(services, "ronglian", "sms") == pytest.approx(0.10)
    await services.history.flush()
    last = (await services.history.minutes(2))[-1]
    assert last["sent"] == 1
    assert last["cost"] == to_units(0.10)


@pytest.mark.gen_test
async def test_a_call_costs_its_started_minutes(make_services, fresh_mobile, sandbox):
    services = await make_services(voice=NO_QUIET_HOURS)
    mobile = fresh_mobile()
    await send_code(services, mobile, channel="voice")
    assert await cost_of(services, "ronglian", "voice") == pytest.approx(0.12)  # one minute
    call_sid = sandbox.inbox(mobile)[-1]["callSid"]
    body = (
        "<Request><action>VoiceCode</action><callSid>"
        f"{call_sid}</callSid><state>0</state><duration>130</duration></Request>"
    )
    await services.receipts.apply(parse_ronglian_voice(body.encode()), "voice")
    assert await cost_of(services, "ronglian", "voice") == pytest.approx(0.36)  # 3 minutes


@pytest.mark.gen_test
async def test_the_yuan_budget_refuses_the_send_that_would_pass_it(make_services, fresh_mobile):
    # 0.12 yuan: two SMS at 0.05 fit, a third would make 0.15.
    services = await make_services(limits={"sms_global_yuan_per_hour": 0.12})
    await send_code(services, fresh_mobile(), captcha_id="a")
    await send_code(services, fresh_mobile(), captcha_id="b")
    refused = await refusal(send_code(services, fresh_mobile(), captcha_id="c"))
    assert refused.ret == Ret.REQERR
    assert refused.data["reason"] == "global_yuan_hourly"
    assert 3500 <= refused.retry_after <= 3600
    assert int(await services.redis.get(keys.sms_global_spend_key())) == to_units(0.10)
    # The count budget gave back what the refused send took there.
    assert int(await services.redis.get(keys.sms_global_hourly_key())) == 2


@pytest.mark.gen_test
async def test_a_send_that_does_not_go_out_gives_its_price_back(
    make_services, fresh_mobile, sandbox
):
    services = await make_services(limits={"sms_global_yuan_per_hour": 1.0})
    sandbox.set_fault(mode="status", status_code="111142", times=1)  # a definite non-send
    refused = await refusal(send_code(services, fresh_mobile()))
    assert refused.ret == Ret.THIRDERR
    assert int(await services.redis.get(keys.sms_global_spend_key()) or 0) == 0
    await services.history.flush()
    assert (await services.history.minutes(2))[-1]["provider_failed"] == 1
