"""The Aliyun SMS sandbox against the official SDK (alibabacloud-dysmsapi20170525), and our
own client's signing against the sandbox: signatures, replays, clock window, SendSms rules."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
import requests
from alibabacloud_dysmsapi20170525 import models
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config as SdkConfig

from sandbox.aliyun_protocol import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_SIGN_NAME,
    DEFAULT_TEMPLATE_CODE,
)
from services.config import AliyunConfig
from services.providers.aliyun import AliyunProvider
from tests.sandbox_helpers import AliyunSandboxProcess


@pytest.fixture(scope="module")
def aliyun_proc(tmp_path_factory) -> Iterator[AliyunSandboxProcess]:
    with AliyunSandboxProcess(tmpdir=str(tmp_path_factory.mktemp("aliyun-sdk"))) as proc:
        yield proc


@pytest.fixture
def sb(aliyun_proc) -> AliyunSandboxProcess:
    aliyun_proc.clear()
    aliyun_proc.reset_faults()
    return aliyun_proc


def sdk(sb, secret: str = DEFAULT_ACCESS_KEY_SECRET, key_id: str = DEFAULT_ACCESS_KEY_ID, v2=False):
    config = SdkConfig(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=f"127.0.0.1:{sb.port}",
        protocol="http",
    )
    if v2:
        config.signature_algorithm = "v2"  # the older RPC scheme: HMAC-SHA1 over the query
    return Client(config)


def send_request(mobile: str, code: str = "123456", **changes) -> models.SendSmsRequest:
    fields = {
        "phone_numbers": mobile,
        "sign_name": DEFAULT_SIGN_NAME,
        "template_code": DEFAULT_TEMPLATE_CODE,
        "template_param": f'{{"code":"{code}"}}',
        "out_id": "ref-1",
        **changes,
    }
    return models.SendSmsRequest(**fields)


@pytest.mark.parametrize("v2", [False, True], ids=["v3-acs3-hmac-sha256", "v2-hmac-sha1"])
def test_official_sdk_sends_and_the_inbox_shows_it(sb, v2):
    answer = sdk(sb, v2=v2).send_sms(send_request("13800000001", "654321"))
    assert answer.status_code == 200
    assert answer.body.code == "OK" and answer.body.message == "OK"
    assert answer.body.biz_id.endswith("^0") and answer.body.request_id
    [entry] = sb.inbox("13800000001")
    assert entry["channel"] == "sms"
    assert entry["TemplateParam"] == {"code": "654321"}
    assert entry["OutId"] == "ref-1" and entry["BizId"] == answer.body.biz_id
    assert entry["text"] == "【阿里云短信测试】您的验证码为：654321，请勿泄露于他人！"


@pytest.mark.parametrize("v2", [False, True], ids=["v3", "v2"])
def test_official_sdk_with_a_wrong_secret_is_refused(sb, v2):
    with pytest.raises(ClientException) as info:
        sdk(sb, secret="wrong-secret", v2=v2).send_sms(send_request("13800000002"))
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.statusCode == 400
    assert sb.inbox() == []


def test_official_sdk_with_an_unknown_key_is_refused(sb):
    with pytest.raises(ClientException) as info:
        sdk(sb, key_id="LTAI-unknown").send_sms(send_request("13800000003"))
    assert info.value.code == "InvalidAccessKeyId.NotFound"
    assert info.value.statusCode == 404


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"template_code": "SMS_000"}, "isv.SMS_TEMPLATE_ILLEGAL"),
        ({"sign_name": "别人的签名"}, "isv.SMS_SIGNATURE_ILLEGAL"),
        ({"phone_numbers": "1380000"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"template_param": "{code:1}"}, "isv.INVALID_JSON_PARAM"),
        ({"template_param": '{"other":"1"}'}, "isv.TEMPLATE_MISSING_PARAMETERS"),
    ],
)
def test_sendsms_business_errors_answer_http_200_with_the_code(sb, changes, code):
    answer = sdk(sb).send_sms(send_request("13800000004", **changes))
    assert answer.status_code == 200
    assert answer.body.code == code and answer.body.message
    assert sb.inbox() == []


def test_missing_parameter_is_a_400(sb):
    with pytest.raises(ClientException) as info:
        sdk(sb).send_sms(models.SendSmsRequest(sign_name=DEFAULT_SIGN_NAME))
    assert info.value.code == "MissingPhoneNumbers"


def test_same_number_twice_a_minute_hits_flow_control(sb):
    client = sdk(sb)
    assert client.send_sms(send_request("13800000005")).body.code == "OK"
    second = client.send_sms(send_request("13800000005"))
    assert second.body.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert "Permits:1" in second.body.message
    assert len(sb.inbox("13800000005")) == 1


def test_status_fault_answers_the_chosen_code(sb):
    sb.set_fault(mode="status", status_code="isv.AMOUNT_NOT_ENOUGH", times=1)
    assert sdk(sb).send_sms(send_request("13800000006")).body.code == "isv.AMOUNT_NOT_ENOUGH"
    assert sdk(sb).send_sms(send_request("13800000006")).body.code == "OK"


def test_bad_fault_setting_is_400(sb):
    with pytest.raises(RuntimeError, match="HTTP 400"):
        sb.set_fault(receipt="sometimes")


# --- our client's signing, checked by the sandbox --------------------------------------------


def our_request(sb, params: dict[str, str], **kwargs) -> requests.PreparedRequest:
    provider = AliyunProvider(None, AliyunConfig(base_url=sb.base_url))  # type: ignore[arg-type]
    signed = provider.signed_request(params, **kwargs)
    return requests.Request("POST", signed.url, headers=dict(signed.headers), data=b"").prepare()


PARAMS = {
    "PhoneNumbers": "13800000007",
    "SignName": DEFAULT_SIGN_NAME,
    "TemplateCode": DEFAULT_TEMPLATE_CODE,
    "TemplateParam": '{"code":"111222"}',
}


def test_our_signed_request_is_accepted_once_and_a_replay_is_refused(sb):
    prepared = our_request(sb, PARAMS)
    with requests.Session() as http:
        first = http.send(prepared, timeout=5)
        assert first.status_code == 200 and first.json()["Code"] == "OK"
        replay = http.send(prepared, timeout=5)
    assert replay.status_code == 400 and replay.json()["Code"] == "SignatureNonceUsed"
    assert len(sb.inbox("13800000007")) == 1


def test_a_parameter_changed_after_signing_is_refused(sb):
    prepared = our_request(sb, PARAMS)
    prepared.url = prepared.url.replace("13800000007", "13800000008")
    answer = requests.Session().send(prepared, timeout=5)
    assert answer.status_code == 400 and answer.json()["Code"] == "SignatureDoesNotMatch"
    assert sb.inbox() == []


def test_a_request_signed_twenty_minutes_ago_is_refused(sb):
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
    answer = requests.Session().send(our_request(sb, PARAMS, now=old), timeout=5)
    assert answer.status_code == 400 and answer.json()["Code"] == "InvalidTimeStamp.Expired"


def test_an_unsigned_acs_header_is_refused(sb):
    prepared = our_request(sb, PARAMS)
    prepared.headers["x-acs-security-token"] = "smuggled"
    answer = requests.Session().send(prepared, timeout=5)
    assert answer.status_code == 400 and answer.json()["Code"] == "IncompleteSignature"
