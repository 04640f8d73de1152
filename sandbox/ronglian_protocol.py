"""Pure Ronglian TemplateSMS protocol logic: settings, auth/sig checks, body validation, limits.

Nothing here touches HTTP or the event loop, so every rule can be unit-tested directly.
Status codes, messages and rules follow docs/RONGLIAN_PROTOCOL.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sandbox.settings import JsonSettings

# China has had no DST since 1991: a fixed +08:00 equals Asia/Shanghai and needs no tzdata.
CST = timezone(timedelta(hours=8), "CST")
TS_FORMAT = "%Y%m%d%H%M%S"

DEFAULT_ACCOUNT_SID = "8aaf0708a2b3c4d5e6f7a8b9c0d1e2f3"
DEFAULT_AUTH_TOKEN = "sandbox0token0000000000000000000a"
DEFAULT_APP_ID = "8aaf0708app0000000000000000000ab"
TEST_TEMPLATE_ID = "1"  # Ronglian's built-in test template; its variables must be numeric (160069)
TEST_TEMPLATE_TEXT = "【云通讯】您使用的是云通讯短信模板，您的验证码是{1}，请于{2}分钟内正确输入"
MAX_RECIPIENTS = 200
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
NUMERIC_RE = re.compile(r"^\d+(\.\d+)?$")
TEMPLATE_VAR_RE = re.compile(r"\{(\d+)\}")

# statusMsg texts from Ronglian's error tables (docs/RONGLIAN_PROTOCOL.md); the 【账号】/【短信】
# prefixes mirror observed ones.
MESSAGES: dict[str, str] = {
    "111101": "【账号】请求包头Authorization参数为空",
    "111102": "【账号】请求包头Authorization参数Base64解码失败",
    "111103": "【账号】请求包头Authorization参数解码后格式有误",
    "111104": "【账号】请求包头Authorization参数解码后账户ID为空",
    "111105": "【账号】请求包头Authorization参数解码后时间戳为空",
    "111106": "【账号】请求包头Authorization参数解码后时间戳过期",
    "111107": "【账号】请求包头Authorization参数中账户ID跟请求地址中的账户ID不一致",
    "111108": "【账号】请求地址Sig参数为空",
    "111109": "【账号】请求地址Sig校验失败",
    "111111": "【账号】超过规定的并发数",
    "111113": "【账号】请求包头Authorization参数中时间戳格式有误，请参考yyyyMMddHHmmss",
    "111141": "【账号】主账户不存在",
    "111142": "【账号】主账户余额不足",
    "111169": "【应用】应用ID为空",
    "111181": "【应用】应用不存在",
    "111182": "【应用】应用不属于主账户",
    "112306": "【短信】接收模板短信的手机号码为空",
    "112307": "【短信】模板短信模板ID为空",
    "112310": "【短信】应用未上线，模板短信接收号码外呼受限",
    "112311": "【短信】短信模板不存在",
    "112609": "HTTP Chunked 编码不支持",
    "112610": "HTTP Accept 为空",
    "112611": "HTTP Content-Type 为空",
    "112616": "HTTP请求包体无法解析，请检查包体格式",
    "160000": "系统错误",
    "160030": "请求包体为空",
    "160031": "参数解析失败",
    "160038": "短信验证码发送过频繁",
    "160040": "验证码超出同模板同号码天发送上限",
    "160041": "通知超出同模板同号码天发送上限",
    "160042": "号码格式有误",
    "160045": "群发号码重复",
    "160048": "号码数超200限制",
    "160050": "短信发送失败",
    "160052": "模板变量格式有误",
    "160069": "测试模板变量非数字",
}


class RonglianError(Exception):
    """A protocol failure that the server reports as {"statusCode": code, "statusMsg": ...}."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    @property
    def message(self) -> str:
        """The Chinese statusMsg for this code."""
        return status_message(self.code)


def status_message(code: str) -> str:
    """Return the statusMsg for a code (a generic text for codes we do not know)."""
    return MESSAGES.get(code, "模拟错误")


@dataclass(frozen=True)
class Template:
    """One SMS template: text with {1},{2}... placeholders and its kind (limits differ by kind)."""

    text: str
    kind: str = "verification"  # or "notification"


def _default_templates() -> dict[str, Template]:
    return {TEST_TEMPLATE_ID: Template(TEST_TEMPLATE_TEXT, "verification")}


@dataclass
class SandboxSettings(JsonSettings):
    """Simulator configuration; every field can be overridden from a JSON file."""

    accounts: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_ACCOUNT_SID: DEFAULT_AUTH_TOKEN}
    )
    apps: dict[str, str] = field(default_factory=lambda: {DEFAULT_APP_ID: DEFAULT_ACCOUNT_SID})
    templates: dict[str, Template] = field(default_factory=_default_templates)
    test_numbers: list[str] = field(default_factory=list)  # empty: app is "launched", no whitelist
    rate_limits: bool = True
    same_number_interval: float = 30.0
    daily_per_template: int = 5
    daily_per_number: int = 8
    daily_per_template_notification: int = 20
    ts_window_seconds: float = 86400.0
    inbox_limit: int = 100_000
    # Status report push (action SMSArrived): where to POST, and the delay range before it.
    report_url: str = ""
    report_delay_ms: list[int] = field(default_factory=lambda: [50, 300])

    @classmethod
    def convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Templates given as text or {"text", "kind"}; test numbers as strings."""
        if "templates" in values:
            values["templates"] = {
                str(tid): Template(t) if isinstance(t, str) else Template(**t)
                for tid, t in values["templates"].items()
            }
        if "test_numbers" in values:
            values["test_numbers"] = [str(n) for n in values["test_numbers"]]
        for t in values.get("templates", {}).values():
            if t.kind not in ("verification", "notification"):
                raise ValueError(f"template kind must be verification|notification: {t.kind!r}")
        return values


@dataclass
class SmsRequest:
    """A validated TemplateSMS body."""

    app_id: str
    to: list[str]
    template_id: str
    datas: list[Any]


def compute_sig(account_sid: str, auth_token: str, ts: str) -> str:
    """sig = upper(hex(md5(accountSid + authToken + ts)))."""
    return hashlib.md5(f"{account_sid}{auth_token}{ts}".encode()).hexdigest().upper()


def build_authorization(account_sid: str, ts: str) -> str:
    """Authorization header value = base64(accountSid + ":" + ts), no scheme prefix."""
    return base64.b64encode(f"{account_sid}:{ts}".encode()).decode("ascii")


def format_ts(moment: datetime) -> str:
    """Format an aware datetime as a 14-digit CST timestamp."""
    return moment.astimezone(CST).strftime(TS_FORMAT)


def now_cst() -> datetime:
    """Current time in China Standard Time."""
    return datetime.now(CST)


def parse_authorization(header: str | None) -> tuple[str, str]:
    """Decode the Authorization header into (sid, ts), raising 111101-111105 / 111113."""
    if not header or not header.strip():
        raise RonglianError("111101")
    try:
        # The Go SDK uses the URL-safe alphabet, so accept both.
        raw = base64.b64decode(header.strip().replace("-", "+").replace("_", "/"), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise RonglianError("111102") from None
    sid, sep, ts = decoded.partition(":")
    if not sep:
        raise RonglianError("111103")
    if not sid:
        raise RonglianError("111104")
    if not ts:
        raise RonglianError("111105")
    parse_ts(ts)
    return sid, ts


def parse_ts(ts: str) -> datetime:
    """Parse a 14-digit yyyyMMddHHmmss CST timestamp, raising 111113 when malformed."""
    # strptime alone would accept unpadded fields, so insist on exactly 14 digits first.
    if not re.fullmatch(r"\d{14}", ts):
        raise RonglianError("111113")
    try:
        return datetime.strptime(ts, TS_FORMAT).replace(tzinfo=CST)
    except ValueError:
        raise RonglianError("111113") from None


def authenticate(
    path_sid: str,
    sig: str | None,
    authorization: str | None,
    settings: SandboxSettings,
    now: datetime,
) -> str:
    """Run checks 4-9 of the spec's order; return the authenticated account sid."""
    if not sig:
        raise RonglianError("111108")
    auth_sid, ts = parse_authorization(authorization)
    if auth_sid != path_sid:
        raise RonglianError("111107")
    token = settings.accounts.get(path_sid)
    if token is None:
        raise RonglianError("111141")
    # The official Go SDK sends lower-case hex, so compare case-insensitively.
    if not hmac.compare_digest(sig.upper().encode(), compute_sig(path_sid, token, ts).encode()):
        raise RonglianError("111109")
    if abs((now - parse_ts(ts)).total_seconds()) > settings.ts_window_seconds:
        raise RonglianError("111106")
    return path_sid


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """Parse a JSON (or legacy XML) body into a dict, raising 112616 / 160031."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RonglianError("112616") from None
    if "xml" in content_type.lower():
        return _parse_xml_body(text)
    try:
        body = json.loads(text)
    except ValueError:
        raise RonglianError("112616") from None
    if not isinstance(body, dict):
        raise RonglianError("160031")
    return body


def _parse_xml_body(text: str) -> dict[str, Any]:
    """Parse the old SDKs' XML body; the root element's name is ignored like the real server."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError:
        raise RonglianError("112616") from None
    body: dict[str, Any] = {}
    for child in root:
        if child.tag == "datas":
            body["datas"] = [d.text or "" for d in child if d.tag == "data"]
        else:
            body[child.tag] = (child.text or "").strip()
    return body


def validate_body(body: dict[str, Any], account_sid: str, settings: SandboxSettings) -> SmsRequest:
    """Run checks 11-15 (appId, to, templateId, whitelist, test-template variables)."""
    app_id = _check_app(body, account_sid, settings)

    to = _parse_to(body.get("to"))

    template_id = body.get("templateId")
    if template_id in (None, ""):
        raise RonglianError("112307")
    # Documented as a string, but clients such as easy-sms send an integer.
    if isinstance(template_id, bool) or not isinstance(template_id, (str, int)):
        raise RonglianError("112311")
    template_id = str(template_id).strip()
    if template_id not in settings.templates:
        raise RonglianError("112311")

    datas = body.get("datas", [])
    if datas is None:
        datas = []
    if not isinstance(datas, list) or not all(_is_scalar(d) for d in datas):
        raise RonglianError("160052")

    if settings.test_numbers and any(n not in settings.test_numbers for n in to):
        raise RonglianError("112310")
    if template_id == TEST_TEMPLATE_ID and not all(NUMERIC_RE.match(str(d)) for d in datas):
        raise RonglianError("160069")
    return SmsRequest(app_id=app_id, to=to, template_id=template_id, datas=datas)


@dataclass
class VoiceRequest:
    """A validated VoiceVerify body."""

    app_id: str
    to: str
    verify_code: str
    play_times: int
    display_num: str
    resp_url: str
    lang: str
    user_data: str


VERIFY_CODE_RE = re.compile(r"^[0-9A-Za-z]{4,8}$")
CALLEE_RE = re.compile(r"^(?:1[3-9]\d{9}|0\d{9,11}(?:-\d{1,6})?)$")


def validate_voice_body(
    body: dict[str, Any], account_sid: str, settings: SandboxSettings
) -> VoiceRequest:
    """VoiceVerify's checks: the app as for TemplateSMS, then to, verifyCode, playTimes, respUrl.

    verifyCode: 4-8 digits or letters; playTimes: 1-3 (string or number, default 1); to: a
    mobile, or a landline with area code (and -extension); respUrl: http(s) or empty.
    """
    app_id = _check_app(body, account_sid, settings)
    to = body.get("to")
    if not isinstance(to, str) or not CALLEE_RE.match(to.strip()):
        raise RonglianError("160042")
    code = body.get("verifyCode")
    if not isinstance(code, str) or not VERIFY_CODE_RE.match(code):
        raise RonglianError("160031")
    plays = body.get("playTimes", "1")
    if isinstance(plays, bool) or str(plays).strip() not in ("1", "2", "3"):
        raise RonglianError("160031")
    fields = {}
    for name in ("displayNum", "respUrl", "lang", "userData"):
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > 256:
            raise RonglianError("160031")
        fields[name] = value
    if fields["respUrl"] and not fields["respUrl"].startswith(("http://", "https://")):
        raise RonglianError("160031")
    if fields["lang"] not in ("", "zh", "en"):
        raise RonglianError("160031")
    if settings.test_numbers and to.strip() not in settings.test_numbers:
        raise RonglianError("112310")
    return VoiceRequest(
        app_id,
        to.strip(),
        code,
        int(str(plays).strip()),
        fields["displayNum"],
        fields["respUrl"],
        fields["lang"] or "zh",
        fields["userData"],
    )


def _check_app(body: dict[str, Any], account_sid: str, settings: SandboxSettings) -> str:
    """The appId checks every API makes (111169, 111181, 111182); return the app id."""
    app_id = body.get("appId")
    if app_id in (None, ""):
        raise RonglianError("111169")
    if not isinstance(app_id, str) or app_id not in settings.apps:
        raise RonglianError("111181")
    if settings.apps[app_id] != account_sid:
        raise RonglianError("111182")
    return app_id


def _is_scalar(value: Any) -> bool:
    """datas elements may be strings or numbers (the real server accepts ["123456", 5])."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _parse_to(to: Any) -> list[str]:
    """Split and validate the comma-separated recipient list (112306, 160048, 160042, 160045)."""
    if to is None or (isinstance(to, str) and not to.strip()):
        raise RonglianError("112306")
    if isinstance(to, int) and not isinstance(to, bool):
        to = str(to)
    if not isinstance(to, str):
        raise RonglianError("160042")
    numbers = [n.strip() for n in to.split(",")]
    if len(numbers) > MAX_RECIPIENTS:
        raise RonglianError("160048")
    if not all(MOBILE_RE.match(n) for n in numbers):
        raise RonglianError("160042")
    if len(set(numbers)) != len(numbers):
        raise RonglianError("160045")
    return numbers


def render_text(template: str, datas: list[Any]) -> str:
    """Substitute {1},{2},... positionally; placeholders without data are left as-is."""

    def repl(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return str(datas[index - 1]) if 1 <= index <= len(datas) else match.group(0)

    return TEMPLATE_VAR_RE.sub(repl, template)
