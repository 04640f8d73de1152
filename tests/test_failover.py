"""Two providers: failover only on a definite provider-side failure, and the circuit breaker."""

from __future__ import annotations

import pytest

from devstack.processes import free_port
from services.providers.failover import CircuitBreaker
from tests.conftest import ROOT, serving
from tests.flows import register

BOTH = ("ronglian", "aliyun")


class FakeClock:
    """A monotonic clock the test moves by hand (no sleeping for a cool-down)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def send(client, mobile: str, captcha_id: str) -> dict:
    text = await client.new_captcha(captcha_id)
    return await client.send_sms(mobile, text, captcha_id)


def aliyun_code(aliyun_sandbox, mobile: str) -> str:
    [entry] = aliyun_sandbox.inbox(mobile)
    return entry["TemplateParam"]["code"]


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "http500"},
        {"mode": "status", "status_code": "111142"},  # balance exhausted
        {"mode": "status", "status_code": "112311"},  # template does not exist
        {"mode": "status", "status_code": "111109"},  # signature (auth token) wrong
    ],
    ids=lambda fault: fault.get("status_code", fault["mode"]),
)
@pytest.mark.gen_test(timeout=30)
async def test_provider_failure_fails_over_and_the_user_registers(
    make_app, sandbox, aliyun_sandbox, fresh_mobile, fault
):
    app = await make_app(providers=BOTH)
    sandbox.set_fault(times=1, **fault)
    async with serving(app) as client:
        mobile = fresh_mobile()
        assert (await send(client, mobile, "fo-1"))["errno"] == "0"
        assert sandbox.inbox(mobile) == []
        code = aliyun_code(aliyun_sandbox, mobile)
        assert (await register(client, mobile, code))["errno"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_refused_connection_fails_over(make_app, aliyun_sandbox, fresh_mobile):
    app = await make_app(providers=BOTH, ronglian={"base_url": f"http://127.0.0.1:{free_port()}"})
    async with serving(app) as client:
        mobile = fresh_mobile()
        assert (await send(client, mobile, "fo-2"))["errno"] == "0"
        assert len(aliyun_sandbox.inbox(mobile)) == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "status", "status_code": "160042"},  # number format rejected
        {"mode": "status", "status_code": "160038"},  # the provider's per-number throttle
        {"mode": "hang"},  # a timeout: Ronglian may be sending it right now
        {"mode": "garbage"},  # not Ronglian's answer: unknown whether it sent
    ],
    ids=lambda fault: fault.get("status_code", fault["mode"]),
)
@pytest.mark.gen_test(timeout=30)
async def test_number_refusals_and_ambiguous_failures_do_not_fail_over(
    make_app, sandbox, aliyun_sandbox, fresh_mobile, fault
):
    app = await make_app(providers=BOTH)
    sandbox.set_fault(times=1, **fault)
    async with serving(app) as client:
        mobile = fresh_mobile()
        assert (await send(client, mobile, "nf-1"))["errno"] == "4301"
        assert aliyun_sandbox.inbox(mobile) == []
        assert sandbox.inbox(mobile) == []


@pytest.mark.gen_test(timeout=30)
async def test_aliyun_number_refusal_is_final_too(make_app, sandbox, aliyun_sandbox, fresh_mobile):
    app = await make_app(providers=("aliyun", "ronglian"))
    aliyun_sandbox.set_fault(mode="status", status_code="isv.BUSINESS_LIMIT_CONTROL", times=1)
    async with serving(app) as client:
        mobile = fresh_mobile()
        assert (await send(client, mobile, "nf-2"))["errno"] == "4301"
        assert sandbox.inbox(mobile) == []


@pytest.mark.gen_test(timeout=30)
async def test_aliyun_first_then_ronglian(make_app, sandbox, aliyun_sandbox, fresh_mobile):
    app = await make_app(providers=("aliyun", "ronglian"))
    async with serving(app) as client:
        first, second = fresh_mobile(), fresh_mobile()
        assert (await send(client, first, "ar-1"))["errno"] == "0"
        assert len(aliyun_sandbox.inbox(first)) == 1 and sandbox.inbox(first) == []
        aliyun_sandbox.set_fault(mode="status", status_code="isv.OUT_OF_SERVICE", times=1)
        assert (await send(client, second, "ar-2"))["errno"] == "0"
        assert len(sandbox.inbox(second)) == 1 and aliyun_sandbox.inbox(second) == []


@pytest.mark.gen_test(timeout=60)
async def test_breaker_opens_skips_ronglian_and_a_probe_closes_it(
    make_app, sandbox, aliyun_sandbox, fresh_mobile
):
    app = await make_app(providers=BOTH, failover={"breaker_failures": 2, "breaker_cooldown": 30.0})
    breaker = app.services.sender.breakers["ronglian"]
    clock = FakeClock()
    breaker.clock = clock
    sandbox.set_fault(mode="http500", times=10)
    async with serving(app) as client:
        for i in range(2):
            assert (await send(client, fresh_mobile(), f"br-{i}"))["errno"] == "0"
        assert breaker.state == "open"
        assert sandbox.faults()["times"] == 8  # Ronglian saw two requests
        # Open: Ronglian is not even asked; Aliyun delivers.
        mobile = fresh_mobile()
        assert (await send(client, mobile, "br-open"))["errno"] == "0"
        assert sandbox.faults()["times"] == 8
        assert len(aliyun_sandbox.inbox(mobile)) == 1
        # After the cool-down one probe goes to Ronglian, which has recovered.
        sandbox.reset_faults()
        clock.now += 30
        assert breaker.state == "half_open"
        mobile = fresh_mobile()
        assert (await send(client, mobile, "br-probe"))["errno"] == "0"
        assert len(sandbox.inbox(mobile)) == 1 and aliyun_sandbox.inbox(mobile) == []
        assert breaker.state == "closed"
        metrics = (await client.fetch("/metrics")).body.decode()
    attempts = 'smsreg_provider_attempts_total{{channel="sms",outcome="{}",provider="ronglian"}}'
    assert f"{attempts.format('skipped_open')} 1.0" in metrics
    assert f"{attempts.format('provider_failed')} 2.0" in metrics


@pytest.mark.gen_test(timeout=30)
async def test_all_circuits_open_is_thirderr_and_nothing_is_kept(
    make_app, sandbox, aliyun_sandbox, fresh_mobile
):
    app = await make_app(failover={"breaker_failures": 1})
    sandbox.set_fault(mode="http500", times=1)
    async with serving(app) as client:
        assert (await send(client, fresh_mobile(), "ao-1"))["errno"] == "4301"
        mobile = fresh_mobile()
        assert (await send(client, mobile, "ao-2"))["errno"] == "4301"  # skipped: open
        assert sandbox.inbox(mobile) == []
        assert not await client.app.services.redis.exists(f"sms:{{{mobile}}}:guard")


def test_breaker_half_open_lets_one_probe_and_a_failed_probe_reopens():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        assert not breaker.record_failure()
    assert breaker.allow() and breaker.record_failure()  # third failure in a row: open
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    assert breaker.record_failure() and breaker.state == "open"  # failed probe: open again
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_success_resets_the_failure_count():
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    assert not breaker.record_failure()
    assert breaker.state == "closed"


def test_providers_setting_is_checked_at_start():
    from services.config import ConfigError, load_config

    config = load_config(None, environ={"SMSREG_PROVIDERS": "aliyun, ronglian"})
    assert config.providers == ("aliyun", "ronglian")
    for bad in ("ronglian,twilio", "ronglian,ronglian", ""):
        with pytest.raises(ConfigError, match="providers"):
            load_config(None, environ={"SMSREG_PROVIDERS": bad})
    # Production refuses the Aliyun sandbox secret only while Aliyun is in use.
    production = {
        "SMSREG_MODE": "production",
        "SMSREG_SECURITY_COOKIE_SECRET": "x" * 40,
        "SMSREG_SECURITY_CODE_HMAC_KEY": "y" * 40,
        "SMSREG_RONGLIAN_AUTH_TOKEN": "z" * 32,
        "SMSREG_RONGLIAN_ACCOUNT_SID": "a" * 32,
        "SMSREG_MYSQL_PASSWORD": "real-password",
        "SMSREG_RECEIPTS_CALLBACK_TOKEN": "t0ken" * 8,
        "SMSREG_RONGLIAN_APP_ID": "b" * 32,
        "SMSREG_RONGLIAN_BASE_URL": "https://app.cloopen.com:8883",
        "SMSREG_SECURITY_SECURE_COOKIES": "true",
        "SMSREG_TOKENS_KEYRING": str(ROOT / "tests" / "fixtures" / "tokens" / "keyring.json"),
    }
    with pytest.raises(ConfigError, match=r"aliyun\.access_key_secret"):
        load_config(None, environ=production)
    assert load_config(None, environ={**production, "SMSREG_PROVIDERS": "ronglian"})
    aliyun = {
        **production,
        "SMSREG_ALIYUN_ACCESS_KEY_ID": "LTAI" + "k" * 20,
        "SMSREG_ALIYUN_ACCESS_KEY_SECRET": "s" * 30,
    }
    with pytest.raises(ConfigError, match=r"aliyun\.base_url"):  # still the sandbox
        load_config(None, environ=aliyun)
    assert load_config(
        None, environ={**aliyun, "SMSREG_ALIYUN_BASE_URL": "https://dysmsapi.aliyuncs.com"}
    )
