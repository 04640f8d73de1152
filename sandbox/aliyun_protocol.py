"""Pure Aliyun SMS (dysmsapi 2017-05-25) protocol logic: signatures, parameters, limits.

Two signing schemes are accepted, as Aliyun accepts them:
- V3, ACS3-HMAC-SHA256 in the Authorization header (what the official SDKs send today);
- V2, HMAC-SHA1 `Signature` over the sorted query (the RPC scheme of older SDKs, and of
  the SDK with signature_algorithm="v2").
Errors are the ones Aliyun answers: the common gateway errors with their HTTP status, and
SendSms's business codes (isv.*) with HTTP 200. Nothing here touches HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox.settings import JsonSettings

# The signature V3 is computed by the function our client signs with: the official SDK's
# requests, accepted by this sandbox (tests/test_aliyun_sandbox.py), prove it right.
from services.providers.aliyun import canonical_query, percent_encode, v3_signature

DEFAULT_ACCESS_KEY_ID = "LTAI5tSandboxAccessKey01"
DEFAULT_ACCESS_KEY_SECRET = "sandbox0secret000000000000000a"
DEFAULT_SIGN_NAME = "阿里云短信测试"
DEFAULT_TEMPLATE_CODE = "SMS_154950909"
DEFAULT_TEMPLATE_TEXT = "您的验证码为：${code}，请勿泄露于他人！"
API_VERSION = "2017-05-25"
MOBILE_RE = re.compile(r"^(?:\+?86|0086)?1[3-9]\d{9}$")
TEMPLATE_VAR_RE = re.compile(r"\$\{(\w+)\}")
V3_ALGORITHM = "ACS3-HMAC-SHA256"

# (HTTP status, Message) of the gateway errors; business errors are HTTP 200.
GATEWAY_ERRORS: dict[str, tuple[int, str]] = {
    "MissingParameter": (
        400,
        "The input parameter that is mandatory for processing this request is not supplied.",
    ),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "InvalidAction.NotFound": (
        404,
        "Specified api is not found, please check your url and method.",
    ),
    "InvalidSignatureMethod": (400, "Specified signature method is not supported."),
}
BUSINESS_MESSAGES: dict[str, str] = {
    "OK": "OK",
    "isv.SMS_SIGNATURE_ILLEGAL": "该账号下找不到对应签名",
    "isv.SMS_TEMPLATE_ILLEGAL": "该账号下找不到对应模板",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.MOBILE_COUNT_OVER_LIMIT": "手机号码数量超过限制，最多支持1000条",
    "isv.INVALID_JSON_PARAM": "JSON参数不合法，只接受字符串值",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板变量缺少对应参数值",
    "isv.BUSINESS_LIMIT_CONTROL": "触发号码天级流控",
    "isv.AMOUNT_NOT_ENOUGH": "账户余额不足",
    "isv.OUT_OF_SERVICE": "业务停机",
    "isv.DAY_LIMIT_CONTROL": "触发日发送限额",
    "isp.SYSTEM_ERROR": "系统错误",
}


class AliyunError(Exception):
    """A refusal answered as {"Code": code, "Message": ..., "RequestId": ...}."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        # Missing<Name> (e.g. MissingPhoneNumbers) is a 400 like the other gateway errors.
        fallback = (
            400 if code.startswith("Missing") else 200,
            BUSINESS_MESSAGES.get(code, "模拟错误"),
        )
        self.http_status, default = GATEWAY_ERRORS.get(code, fallback)
        self.message = message or default


@dataclass
class AliyunSettings(JsonSettings):
    """Simulator configuration; every field can be overridden from a JSON file."""

    access_keys: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET}
    )
    sign_names: list[str] = field(default_factory=lambda: [DEFAULT_SIGN_NAME])
    templates: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_TEMPLATE_CODE: DEFAULT_TEMPLATE_TEXT}
    )
    rate_limits: bool = True
    per_minute: int = 1  # verification codes per number and signature (Aliyun's default)
    per_hour: int = 5
    per_day: int = 10
    time_window_seconds: float = 900.0  # x-acs-date / Timestamp must be within 15 minutes
    inbox_limit: int = 100_000
    # Delivery receipts (SmsReport HTTP push): where to POST, and the delay before each.
    report_url: str = ""
    report_delay_ms: list[int] = field(default_factory=lambda: [50, 300])


def v2_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """Base64 HMAC-SHA1 of METHOD&%2F&encode(canonical query), key secret + "&"."""
    query = canonical_query({k: v for k, v in params.items() if k != "Signature"})
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(query)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def parse_iso8601(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise AliyunError("InvalidTimeStamp.Format") from None


class NonceRegistry:
    """Nonces seen within the time window: a replayed request is refused."""

    MAX = 200_000

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def use(self, nonce: str, now: float, window: float) -> None:
        if not nonce:
            raise AliyunError("MissingParameter", "SignatureNonce is mandatory for this action.")
        seen = self._seen.get(nonce)
        if seen is not None and now - seen < window:
            raise AliyunError("SignatureNonceUsed")
        self._seen[nonce] = now
        while len(self._seen) > self.MAX:
            del self._seen[next(iter(self._seen))]

    def clear(self) -> None:
        self._seen.clear()


@dataclass
class SignedRequest:
    """What authentication needs of one HTTP request (names of headers in lower case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, str]


def authenticate(
    request: SignedRequest, settings: AliyunSettings, nonces: NonceRegistry, now: datetime
) -> tuple[str, str, dict[str, str]]:
    """Verify the signature; return (access key id, action, API parameters)."""
    authorization = request.headers.get("authorization", "")
    if authorization.startswith(V3_ALGORITHM):
        return _authenticate_v3(request, authorization, settings, nonces, now)
    params = {**request.query, **request.form}
    if "Signature" in params:
        return _authenticate_v2(request, params, settings, nonces, now)
    raise AliyunError("MissingParameter", "Signature is mandatory for this action.")


def _authenticate_v3(
    request: SignedRequest,
    authorization: str,
    settings: AliyunSettings,
    nonces: NonceRegistry,
    now: datetime,
) -> tuple[str, str, dict[str, str]]:
    match = re.fullmatch(
        rf"{V3_ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)",
        authorization.strip(),
    )
    if not match:
        raise AliyunError("IncompleteSignature")
    key_id, signed, signature = match.groups()
    signed_headers = signed.split(";")
    headers = request.headers
    required = ["host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"]
    for name in [*required, "x-acs-content-sha256"]:
        if not headers.get(name):
            raise AliyunError("MissingParameter", f"{name} is mandatory for this action.")
    # Every x-acs-* header and host must be signed, else they could be changed in transit.
    must_sign = set(required) | {h for h in headers if h.startswith("x-acs-")}
    if signed_headers != sorted(signed_headers) or not must_sign <= set(signed_headers):
        raise AliyunError("IncompleteSignature")
    secret = settings.access_keys.get(key_id)
    if secret is None:
        raise AliyunError("InvalidAccessKeyId.NotFound")
    payload_sha256 = hashlib.sha256(request.body).hexdigest()
    expected = v3_signature(
        secret,
        request.method,
        request.path,
        request.query,
        headers,
        signed_headers,
        headers["x-acs-content-sha256"],
    )
    if headers["x-acs-content-sha256"] != payload_sha256 or not hmac.compare_digest(
        expected, signature
    ):
        raise AliyunError("SignatureDoesNotMatch")
    _check_time(headers["x-acs-date"], settings, now)
    nonces.use(headers["x-acs-signature-nonce"], now.timestamp(), settings.time_window_seconds)
    if headers["x-acs-version"] != API_VERSION:
        raise AliyunError("InvalidVersion")
    return key_id, headers["x-acs-action"], {**request.query, **request.form}


def _authenticate_v2(
    request: SignedRequest,
    params: dict[str, str],
    settings: AliyunSettings,
    nonces: NonceRegistry,
    now: datetime,
) -> tuple[str, str, dict[str, str]]:
    for name in ("AccessKeyId", "SignatureNonce", "Timestamp", "Action", "Version"):
        if not params.get(name):
            raise AliyunError("MissingParameter", f"{name} is mandatory for this action.")
    if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
        raise AliyunError("InvalidSignatureMethod")
    secret = settings.access_keys.get(params["AccessKeyId"])
    if secret is None:
        raise AliyunError("InvalidAccessKeyId.NotFound")
    expected = v2_signature(secret, request.method, params)
    if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
        raise AliyunError("SignatureDoesNotMatch")
    _check_time(params["Timestamp"], settings, now)
    nonces.use(params["SignatureNonce"], now.timestamp(), settings.time_window_seconds)
    if params["Version"] != API_VERSION:
        raise AliyunError("InvalidVersion")
    api = {
        k: v
        for k, v in params.items()
        if k
        not in {
            "AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce",
            "SignatureVersion", "Timestamp", "Action", "Version", "Format",
        }
    }  # fmt: skip
    return params["AccessKeyId"], params["Action"], api


def _check_time(value: str, settings: AliyunSettings, now: datetime) -> None:
    if abs((now - parse_iso8601(value)).total_seconds()) > settings.time_window_seconds:
        raise AliyunError("InvalidTimeStamp.Expired")


@dataclass
class SendSmsRequest:
    numbers: list[str]
    sign_name: str
    template_code: str
    template_param: dict[str, str]
    out_id: str


def validate_send_sms(params: dict[str, str], settings: AliyunSettings) -> SendSmsRequest:
    """SendSms's own checks, in Aliyun's order: missing, signature, template, numbers, params."""
    for name in ("PhoneNumbers", "SignName", "TemplateCode"):
        if not params.get(name):
            # Aliyun names the parameter in the code: MissingPhoneNumbers, MissingSignName ...
            raise AliyunError(f"Missing{name}", f"{name} is mandatory for this action.")
    if params["SignName"] not in settings.sign_names:
        raise AliyunError("isv.SMS_SIGNATURE_ILLEGAL")
    template = settings.templates.get(params["TemplateCode"])
    if template is None:
        raise AliyunError("isv.SMS_TEMPLATE_ILLEGAL")
    numbers = [n.strip() for n in params["PhoneNumbers"].split(",")]
    if len(numbers) > 1000:
        raise AliyunError("isv.MOBILE_COUNT_OVER_LIMIT")
    if not all(MOBILE_RE.match(n) for n in numbers):
        raise AliyunError("isv.MOBILE_NUMBER_ILLEGAL")
    raw = params.get("TemplateParam", "")
    try:
        values = json.loads(raw) if raw else {}
    except ValueError:
        raise AliyunError("isv.INVALID_JSON_PARAM") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise AliyunError("isv.INVALID_JSON_PARAM")
    if any(name not in values for name in TEMPLATE_VAR_RE.findall(template)):
        raise AliyunError("isv.TEMPLATE_MISSING_PARAMETERS")
    return SendSmsRequest(
        [n[-11:] for n in numbers],
        params["SignName"],
        params["TemplateCode"],
        values,
        params.get("OutId", ""),
    )


def render(template: str, values: dict[str, str]) -> str:
    return TEMPLATE_VAR_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class NumberLimiter:
    """Aliyun's default flow control for verification codes: per number and signature."""

    def __init__(self, settings: AliyunSettings) -> None:
        self.settings = settings
        self._sent: dict[tuple[str, str], list[float]] = {}

    def check_and_record(self, numbers: list[str], sign_name: str, now: float) -> None:
        s = self.settings
        if not s.rate_limits:
            return
        for number in numbers:
            times = [t for t in self._sent.get((number, sign_name), []) if now - t < 86400]
            for window, limit, label in ((60, s.per_minute, "分钟"), (3600, s.per_hour, "小时")):
                if sum(1 for t in times if now - t < window) >= limit:
                    raise AliyunError(
                        "isv.BUSINESS_LIMIT_CONTROL", f"触发{label}级流控Permits:{limit}"
                    )
            if len(times) >= s.per_day:
                raise AliyunError("isv.BUSINESS_LIMIT_CONTROL", f"触发天级流控Permits:{s.per_day}")
        for number in numbers:
            key = (number, sign_name)
            self._sent[key] = [t for t in self._sent.get(key, []) if now - t < 86400] + [now]

    def clear(self) -> None:
        self._sent.clear()
