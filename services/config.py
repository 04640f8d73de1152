"""Typed configuration: loaded once from config.yml, overridden by the environment, validated."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import re
import types
import typing
import urllib.parse
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

from services.clientip import parse_networks

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Section = TypeVar("Section", bound="DataclassInstance")
ENV_PREFIX = "SMSREG_"
# Spoken samples of every alphabet character (scripts/make-voices.sh); the package has digits only.
VOICES_DIR = Path(__file__).resolve().parent.parent / "assets" / "voices"
PLACEHOLDER_MARK = "change-me"
# WebOTP's origin-bound line "@<host> #<code>": a host name, nothing else.
HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
WEBOTP_DOMAIN_RE = re.compile(rf"(?=.{{1,253}}$)(?:{HOST_LABEL}\.)*{HOST_LABEL}")


class ConfigError(Exception):
    """A configuration problem, reported to the operator as one line."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_size: int = 16384
    max_request_size: int = 1048576
    idle_connection_timeout: float = 30.0
    body_timeout: float = 10.0
    shutdown_timeout: float = 10.0
    executor_workers: int = 2
    processes: int = 0
    event_loop: str = "uvloop"


@dataclass(frozen=True)
class SecurityConfig:
    cookie_secret: str = "change-me-cookie-secret-0000000000"
    code_hmac_key: str = "change-me-code-hmac-key-000000000"
    secure_cookies: bool = False
    session_ttl: int = 86400
    trusted_proxies: str = ""
    metrics_allow: str = "127.0.0.0/8, ::1/128"
    ipv6_prefix: int = 64


@dataclass(frozen=True)
class AccountsConfig:
    password_min: int = 6
    password_max: int = 64
    max_code_attempts: int = 5
    login_max_failures: int = 5
    login_ip_max_failures: int = 20
    login_failure_window: int = 600
    login_captcha_after: int = 20
    login_captcha_window: int = 3600


@dataclass(frozen=True)
class FamiliesConfig:
    ihome: bool = True
    meiduo: bool = True
    news: bool = True


@dataclass(frozen=True)
class LimitsConfig:
    sms_per_mobile_hour: int = 5
    sms_per_mobile_day: int = 10
    sms_per_ip_hour: int = 20
    sms_global_per_hour: int = 1000
    captcha_per_ip_minute: int = 60
    count_per_ip_minute: int = 30
    audio_captcha_cost: int = 3


@dataclass(frozen=True)
class RedisConfig:
    mode: str = "standalone"
    url: str = "redis://127.0.0.1:6379/0"
    cluster_nodes: str = ""
    socket_timeout: float = 2.0
    connect_timeout: float = 1.0
    max_connections: int = 512


@dataclass(frozen=True)
class MysqlConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    hosts: str = ""
    user: str = "smsreg"
    password: str = "smsreg"
    database: str = "smsreg"
    pool_min: int = 1
    pool_max: int = 50
    connect_timeout: float = 2.0
    query_timeout: float = 3.0
    pool_recycle: int = 3600
    failback_interval: float = 30.0
    conflict_retries: int = 3

    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node, the preferred one first: `hosts`, else host and port."""
        if self.hosts.strip():
            return host_port_list(self.hosts)
        return [(self.host, self.port)]


@dataclass(frozen=True)
class CaptchaConfig:
    ttl: int = 180
    length: int = 4
    # No look-alikes: 0/O/Q/D, 1/I/L, 2/Z, 5/S, 6/G, 8/B are left out.
    alphabet: str = "ACEFHJKMNPRTUVWXY34679"
    width: int = 160
    height: int = 60
    render_processes: int = 1
    pool_size: int = 64


@dataclass(frozen=True)
class SmsConfig:
    code_ttl: int = 300
    resend_interval: int = 60
    template_id: str = "1"
    mobile_changed_template_id: str = "2"
    webotp_domain: str = ""


@dataclass(frozen=True)
class RonglianConfig:
    base_url: str = "http://127.0.0.1:8883"
    account_sid: str = "8aaf0708a2b3c4d5e6f7a8b9c0d1e2f3"
    auth_token: str = "sandbox0token0000000000000000000a"
    app_id: str = "8aaf0708app0000000000000000000ab"
    connect_timeout: float = 2.0
    request_timeout: float = 5.0
    max_clients: int = 100


@dataclass(frozen=True)
class AliyunConfig:
    base_url: str = "http://127.0.0.1:8884"
    access_key_id: str = "LTAI5tSandboxAccessKey01"
    access_key_secret: str = "sandbox0secret000000000000000a"
    sign_name: str = "阿里云短信测试"
    template_code: str = "SMS_154950909"
    connect_timeout: float = 2.0
    request_timeout: float = 5.0


@dataclass(frozen=True)
class FailoverConfig:
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0


PROVIDER_NAMES = ("ronglian", "aliyun")


@dataclass(frozen=True)
class VoiceConfig:
    play_times: int = 2
    display_num: str = ""
    lang: str = "zh"
    # No calls in the quiet hours (local time of `timezone`); start == end: no quiet hours.
    quiet_start: str = "22:00"
    quiet_end: str = "07:30"
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class ReceiptsConfig:
    # Providers push receipts to {public_base_url}/callbacks/{callback_token}/<provider>/<kind>.
    callback_token: str = "change-me-callback-token-00000000"
    allowed_sources: str = ""
    public_base_url: str = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class FraudConfig:
    enabled: bool = True
    window: int = 3600
    buckets: int = 12
    min_sends: int = 5
    min_conversion_percent: int = 20
    elevated_sends: int = 3
    cooldown: int = 3600
    budget_share_newcomer: float = 0.8
    budget_share_poor: float = 0.5
    budget_alert_ratio: float = 0.8
    pow_cost: int = 50
    pow_max_counter: int = 2000
    pow_ttl: int = 300


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True)
class Config:
    mode: str = "development"
    server: ServerConfig = field(default_factory=ServerConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    families: FamiliesConfig = field(default_factory=FamiliesConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    mysql: MysqlConfig = field(default_factory=MysqlConfig)
    captcha: CaptchaConfig = field(default_factory=CaptchaConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    ronglian: RonglianConfig = field(default_factory=RonglianConfig)
    providers: tuple[str, ...] = ("ronglian", "aliyun")
    aliyun: AliyunConfig = field(default_factory=AliyunConfig)
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    receipts: ReceiptsConfig = field(default_factory=ReceiptsConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    fraud: FraudConfig = field(default_factory=FraudConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def replace(self, **sections: dict[str, object]) -> Config:
        """Return a copy with some settings changed, e.g. replace(redis={"url": ...})."""
        changes = {
            name: dataclasses.replace(getattr(self, name), **values)
            if isinstance(values, dict)
            else values  # a top-level setting such as providers=("ronglian", "aliyun")
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changes)


# Settings that production mode refuses to run with while they hold the shipped sandbox value.
SANDBOX_SECRETS = {
    ("ronglian", "auth_token"): RonglianConfig.auth_token,
    ("ronglian", "account_sid"): RonglianConfig.account_sid,
    ("ronglian", "app_id"): RonglianConfig.app_id,
    ("aliyun", "access_key_secret"): AliyunConfig.access_key_secret,
    ("aliyun", "access_key_id"): AliyunConfig.access_key_id,
}


def load_config(path: str | Path | None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply SMSREG_<SECTION>_<KEY> overrides and validate."""
    raw: dict[str, object] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    _apply_environment(raw, os.environ if environ is None else environ)
    config = _build(Config, raw, "")
    _validate(config)
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: what is wrong and where (its own text spans lines)."""
    problem = getattr(exc, "problem", None) or "cannot parse"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _apply_environment(raw: dict[str, object], environ: typing.Mapping[str, str]) -> None:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in sections and not dataclasses.is_dataclass(sections[key].type):
            raw[key] = value
            continue
        section, _, setting = key.partition("_")
        if section not in sections or not setting:
            raise ConfigError(f"unknown environment setting {name}")
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        # Environment values are strings; YAML parsing gives "8000" -> 8000, "true" -> True.
        target[setting] = _parse_env_value(value)


def _parse_env_value(value: str) -> object:
    if ":" in value:
        return value  # a time such as 22:00 (YAML 1.1 would read a base-60 number)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, str | int | float | bool) else value


def _build(cls: type[Section], raw: object, where: str) -> Section:
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {where or '<root>'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config key {_join(where, unknown[0])!r}")
    values: dict[str, object] = {}
    for name, value in raw.items():
        kind = hints[name]
        dotted = _join(where, name)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, dotted)
        else:
            values[name] = _coerce(kind, value, dotted)
    return cls(**values)


def _coerce(kind: object, value: object, dotted: str) -> object:
    if typing.get_origin(kind) is tuple:
        # A list of names: a YAML list, or "a, b" from an environment variable.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"config key {dotted!r} must be a list of names, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    if isinstance(kind, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if (
        isinstance(kind, type)
        and isinstance(value, kind)
        and not (kind is int and isinstance(value, bool))
    ):
        return value
    expected = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"config key {dotted!r} must be {expected}, got {value!r}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _validate(config: Config) -> None:
    if config.redis.mode not in ("standalone", "cluster"):
        raise ConfigError("config key 'redis.mode' must be standalone or cluster")
    if config.redis.mode == "cluster":
        try:
            cluster_nodes(config.redis.cluster_nodes)
        except ValueError as exc:
            raise ConfigError(f"config key 'redis.cluster_nodes': {exc}") from None
    if config.mysql.hosts.strip():
        try:
            host_port_list(config.mysql.hosts)
        except ValueError as exc:
            raise ConfigError(f"config key 'mysql.hosts': {exc}") from None
    if config.mysql.conflict_retries < 0:
        raise ConfigError("config key 'mysql.conflict_retries' must be 0 or more")
    if config.mode not in ("development", "production"):
        raise ConfigError(
            f"config key 'mode' must be development or production, got {config.mode!r}"
        )
    positive = {
        "server.port": config.server.port,
        "server.max_body_size": config.server.max_body_size,
        "server.executor_workers": config.server.executor_workers,
        "redis.socket_timeout": config.redis.socket_timeout,
        "mysql.pool_max": config.mysql.pool_max,
        "mysql.query_timeout": config.mysql.query_timeout,
        "mysql.failback_interval": config.mysql.failback_interval,
        "captcha.ttl": config.captcha.ttl,
        "security.session_ttl": config.security.session_ttl,
        "accounts.max_code_attempts": config.accounts.max_code_attempts,
        **{
            f"limits.{f.name}": getattr(config.limits, f.name)
            for f in dataclasses.fields(LimitsConfig)
        },
        "accounts.login_max_failures": config.accounts.login_max_failures,
        "accounts.login_failure_window": config.accounts.login_failure_window,
        "accounts.login_ip_max_failures": config.accounts.login_ip_max_failures,
        "accounts.login_captcha_after": config.accounts.login_captcha_after,
        "accounts.login_captcha_window": config.accounts.login_captcha_window,
        "captcha.length": config.captcha.length,
        "sms.code_ttl": config.sms.code_ttl,
        "sms.resend_interval": config.sms.resend_interval,
        "ronglian.request_timeout": config.ronglian.request_timeout,
        "aliyun.request_timeout": config.aliyun.request_timeout,
        "failover.breaker_failures": config.failover.breaker_failures,
        "failover.breaker_cooldown": config.failover.breaker_cooldown,
        **{
            f"fraud.{f.name}": getattr(config.fraud, f.name)
            for f in dataclasses.fields(FraudConfig)
            if f.type != "bool"
        },
    }
    for dotted, value in positive.items():
        if value <= 0:
            raise ConfigError(f"config key {dotted!r} must be positive, got {value!r}")
    if not config.providers:
        raise ConfigError("config key 'providers' must name at least one provider")
    unknown = [name for name in config.providers if name not in PROVIDER_NAMES]
    if unknown or len(set(config.providers)) != len(config.providers):
        raise ConfigError(
            f"config key 'providers' must list distinct names of {', '.join(PROVIDER_NAMES)}, "
            f"got {', '.join(config.providers)}"
        )
    shares = ("budget_share_newcomer", "budget_share_poor", "budget_alert_ratio")
    for name in shares:
        if not 0 < getattr(config.fraud, name) <= 1:
            raise ConfigError(f"config key 'fraud.{name}' must be in (0, 1]")
    if config.fraud.min_conversion_percent > 100:
        raise ConfigError("config key 'fraud.min_conversion_percent' must be at most 100")
    if config.fraud.window < config.fraud.buckets:
        raise ConfigError("config key 'fraud.window' must be at least 'fraud.buckets' seconds")
    if config.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("config key 'logging.level' must be DEBUG/INFO/WARNING/ERROR")
    if config.logging.format not in ("text", "json"):
        raise ConfigError("config key 'logging.format' must be text or json")
    if not 1 <= config.security.ipv6_prefix <= 128:
        raise ConfigError("config key 'security.ipv6_prefix' must be between 1 and 128")
    try:
        listen_hosts(config.server.host)
    except ValueError as exc:
        raise ConfigError(f"config key 'server.host': {exc}") from None
    if config.captcha.render_processes < 0 or config.captcha.pool_size < 0:
        raise ConfigError("config keys 'captcha.render_processes' and 'pool_size' must be >= 0")
    if config.server.event_loop not in ("uvloop", "asyncio"):
        raise ConfigError("config key 'server.event_loop' must be uvloop or asyncio")
    if config.server.processes < 0:
        raise ConfigError("config key 'server.processes' must be 0 (one per core) or more")
    if config.mysql.pool_min > config.mysql.pool_max:
        raise ConfigError("config key 'mysql.pool_min' must not exceed 'mysql.pool_max'")
    if config.limits.audio_captcha_cost > config.limits.captcha_per_ip_minute:
        raise ConfigError(
            "config key 'limits.audio_captcha_cost' must not exceed 'captcha_per_ip_minute' "
            "(no audio CAPTCHA could ever be served)"
        )
    if len(set(config.captcha.alphabet)) < 10:
        raise ConfigError("config key 'captcha.alphabet' needs at least 10 distinct characters")
    unspoken = sorted(c for c in set(config.captcha.alphabet) if not (VOICES_DIR / c).is_dir())
    if unspoken:
        raise ConfigError(
            f"config key 'captcha.alphabet': no audio samples for {''.join(unspoken)!r} "
            "(run scripts/make-voices.sh with the new alphabet)"
        )
    if config.sms.webotp_domain and not WEBOTP_DOMAIN_RE.fullmatch(config.sms.webotp_domain):
        raise ConfigError(
            "config key 'sms.webotp_domain' must be a bare host name such as example.com "
            "(no scheme, port or path), or empty"
        )
    for dotted in ("trusted_proxies", "metrics_allow"):
        try:
            parse_networks(getattr(config.security, dotted))
        except ValueError as exc:
            raise ConfigError(f"config key 'security.{dotted}': {exc}") from None
    try:
        parse_networks(config.receipts.allowed_sources)
    except ValueError as exc:
        raise ConfigError(f"config key 'receipts.allowed_sources': {exc}") from None
    if (
        len(config.receipts.callback_token) < 16
        or not config.receipts.callback_token.replace("-", "").isalnum()
    ):
        raise ConfigError("config key 'receipts.callback_token' must be 16+ letters, digits or '-'")
    _validate_voice(config.voice)
    if config.mode == "production":
        _refuse_placeholders(config)


def clock_time(value: str) -> datetime.time:
    """'22:00' -> time(22, 0) (ValueError otherwise)."""
    return datetime.datetime.strptime(value, "%H:%M").time()


def _validate_voice(voice: VoiceConfig) -> None:
    if not 1 <= voice.play_times <= 3:
        raise ConfigError("config key 'voice.play_times' must be 1, 2 or 3")
    if voice.lang not in ("zh", "en"):
        raise ConfigError("config key 'voice.lang' must be zh or en")
    for key in ("quiet_start", "quiet_end"):
        try:
            clock_time(getattr(voice, key))
        except ValueError:
            raise ConfigError(f"config key 'voice.{key}' must be HH:MM") from None
    try:
        zoneinfo.ZoneInfo(voice.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"config key 'voice.timezone': unknown time zone {voice.timezone!r}"
        ) from None


def listen_hosts(spec: str) -> list[str | None]:
    """'127.0.0.1, ::1' -> the addresses to listen on; '' -> [None]: every address of both
    families; '::' alone is every IPv6 address (Tornado sets IPV6_V6ONLY)."""
    hosts = [part.strip() for part in spec.split(",") if part.strip()]
    if not hosts:
        return [None]
    for host in hosts:
        if host != "localhost":
            ipaddress.ip_address(host)  # ValueError: not an address
    return list(hosts)


def cluster_nodes(spec: str) -> list[tuple[str, int]]:
    """'10.0.0.1:7000, 10.0.0.2:7000' -> [(host, port), ...]; at least one node."""
    return host_port_list(spec, "cluster mode needs at least one host:port")


def host_port_list(
    spec: str, when_empty: str = "needs at least one host:port"
) -> list[tuple[str, int]]:
    """'10.0.0.1:3306, 10.0.0.2:3306' -> [(host, port), ...] in order; at least one."""
    nodes = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{part!r} is not host:port")
        nodes.append((host, int(port)))
    if not nodes:
        raise ValueError(when_empty)
    return nodes


def _refuse_placeholders(config: Config) -> None:
    secrets_to_check = {
        "security.cookie_secret": config.security.cookie_secret,
        "security.code_hmac_key": config.security.code_hmac_key,
        "ronglian.auth_token": config.ronglian.auth_token,
        "aliyun.access_key_secret": config.aliyun.access_key_secret,
        "receipts.callback_token": config.receipts.callback_token,
        "mysql.password": config.mysql.password,
    }
    # A provider that is not in use may keep its sandbox credentials.
    unused = set(PROVIDER_NAMES) - set(config.providers)
    for dotted in list(secrets_to_check):
        if dotted.split(".")[0] in unused:
            del secrets_to_check[dotted]
    for dotted, value in secrets_to_check.items():
        if not value or PLACEHOLDER_MARK in value:
            raise ConfigError(
                f"production mode refuses the placeholder value of {dotted!r}; "
                f"set {ENV_PREFIX}{dotted.replace('.', '_').upper()}"
            )
    for (section, key), sandbox_value in SANDBOX_SECRETS.items():
        if section in unused:
            continue
        if getattr(getattr(config, section), key) == sandbox_value:
            raise ConfigError(
                f"production mode refuses the sandbox value of '{section}.{key}'; "
                f"set {ENV_PREFIX}{section.upper()}_{key.upper()}"
            )
    for dotted in ("cookie_secret", "code_hmac_key"):
        if len(getattr(config.security, dotted)) < 32:
            raise ConfigError(f"config key 'security.{dotted}' must be at least 32 characters")
    if not config.security.secure_cookies:
        raise ConfigError(
            "production mode refuses 'security.secure_cookies: false': session cookies must "
            "only travel over HTTPS"
        )
    for provider in config.providers:
        _refuse_sandbox_url(provider, getattr(config, provider).base_url)


def _refuse_sandbox_url(provider: str, base_url: str) -> None:
    """Production sends through the providers over HTTPS, never to a sandbox on this machine."""
    parts = urllib.parse.urlsplit(base_url)
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.endswith(".localhost")
    if parts.scheme != "https" or loopback:
        raise ConfigError(
            f"production mode refuses '{provider}.base_url' {base_url!r}: it must be an https URL "
            f"of the provider, not the sandbox; set SMSREG_{provider.upper()}_BASE_URL"
        )
