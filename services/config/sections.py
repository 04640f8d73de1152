"""The configuration's sections: each setting's type, its default (the one source of it:
config.yml and docs/CONFIGURATION.md are tested against these) and the rules its value meets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TypeVar

from services.config.rules import (
    Rule,
    at_least,
    at_most,
    between,
    clock,
    fraction,
    host_name_or_empty,
    host_port_list,
    host_ports_or_empty,
    keyring_or_empty,
    listen_hosts,
    log_level,
    meiduo_templates_or_empty,
    networks,
    non_empty,
    one_of,
    operator_list,
    page_url,
    parsed_by,
    positive,
    provider_list,
    site_path_or_empty,
    spoken_alphabet,
    time_zone,
    url_token,
    version_label,
    web_origins,
    white_text_colour,
)

T = TypeVar("T")
RULES = "rules"


def setting(default: T, *rules: Rule) -> T:
    """A setting with a default and the rules its value must meet (checks.check_settings)."""
    return field(default=default, metadata={RULES: rules})


@dataclass(frozen=True)
class ServerConfig:
    host: str = setting("127.0.0.1", parsed_by(listen_hosts))
    port: int = setting(8000, positive)
    max_body_size: int = setting(16384, positive)
    max_request_size: int = 1048576
    idle_connection_timeout: float = 30.0
    body_timeout: float = 10.0
    shutdown_timeout: float = 10.0
    executor_workers: int = setting(2, positive)
    processes: int = setting(0, at_least(0, "0 (one per core) or more"))
    event_loop: str = setting("uvloop", one_of("uvloop", "asyncio"))


@dataclass(frozen=True)
class SecurityConfig:
    cookie_secret: str = "change-me-cookie-secret-0000000000"
    code_hmac_key: str = "change-me-code-hmac-key-000000000"
    secure_cookies: bool = False
    session_ttl: int = setting(86400, positive)
    trusted_proxies: str = setting("", networks)
    metrics_allow: str = setting("127.0.0.0/8, ::1/128", networks)
    ipv6_prefix: int = setting(64, between(1, 128, "between 1 and 128"))


@dataclass(frozen=True)
class AccountsConfig:
    password_min: int = 6
    password_max: int = 64
    max_code_attempts: int = setting(5, positive)
    login_max_failures: int = setting(5, positive)
    login_ip_max_failures: int = setting(20, positive)
    login_failure_window: int = setting(600, positive)
    login_captcha_after: int = setting(20, positive)
    login_captcha_window: int = setting(3600, positive)
    login_global_captcha_after: int = setting(30, at_least(0, "0 (off) or more"))
    login_global_window: int = setting(60, positive)
    max_hashes_in_flight: int = setting(8, at_least(0, "0 (no bound) or more"))
    paid_hash_wait: float = setting(10.0, at_least(0, "0 (refused at once) or more"))
    sms_login_signs_up: bool = True
    registered_set: bool = True


@dataclass(frozen=True)
class FamiliesConfig:
    ihome: bool = True
    meiduo: bool = True
    news: bool = True
    # A meiduo project's templates directory (its register.html and login.html).
    meiduo_templates: str = setting("", meiduo_templates_or_empty)


@dataclass(frozen=True)
class LimitsConfig:
    sms_per_mobile_hour: int = setting(5, positive)
    sms_per_mobile_day: int = setting(10, positive)
    sms_per_ip_hour: int = setting(20, positive)
    sms_global_per_hour: int = setting(1000, positive)
    # The same budget in yuan (costs.*): 0 = none. Checked with the count, before the send.
    sms_global_yuan_per_hour: float = setting(0.0, at_least(0, "0 (no budget in yuan) or more"))
    captcha_per_ip_minute: int = setting(60, positive)
    count_per_ip_minute: int = setting(30, positive)
    audio_captcha_cost: int = setting(3, positive)


@dataclass(frozen=True)
class AdmissionConfig:
    max_sends_in_flight: int = setting(100, positive)
    min_sends_in_flight: int = setting(16, positive)
    max_loop_lag: float = setting(0.0, at_least(0, "0 (off) or more"))
    retry_after: int = setting(2, positive)
    shed_delay: float = setting(1.0, at_least(0, "0 (answer at once) or more"))
    paid_wait: float = setting(3.0, at_least(0, "0 (refused at once) or more"))


@dataclass(frozen=True)
class RedisConfig:
    mode: str = setting("standalone", one_of("standalone", "cluster"))
    url: str = "redis://127.0.0.1:6379/0"
    cluster_nodes: str = ""  # checked in cluster mode (checks._between_settings)
    socket_timeout: float = setting(2.0, positive)
    connect_timeout: float = 1.0
    max_connections: int = 512


@dataclass(frozen=True)
class MysqlConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    hosts: str = setting("", host_ports_or_empty)
    user: str = "smsreg"
    password: str = "smsreg"
    database: str = "smsreg"
    pool_min: int = 1
    pool_max: int = setting(50, positive)
    connect_timeout: float = 2.0
    query_timeout: float = setting(3.0, positive)
    pool_recycle: int = 3600
    failback_interval: float = setting(30.0, positive)
    conflict_retries: int = setting(3, at_least(0, "0 or more"))

    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node, the preferred one first: `hosts`, else host and port."""
        if self.hosts.strip():
            return host_port_list(self.hosts)
        return [(self.host, self.port)]


@dataclass(frozen=True)
class CaptchaConfig:
    ttl: int = setting(180, positive)
    length: int = setting(4, positive)
    # No look-alikes: 0/O/Q/D, 1/I/L, 2/Z, 5/S, 6/G, 8/B are left out.
    alphabet: str = setting("ACEFHJKMNPRTUVWXY34679", spoken_alphabet)
    width: int = 160
    height: int = 60
    render_processes: int = setting(1, at_least(0, "0 or more"))
    pool_size: int = setting(64, at_least(0, "0 or more"))
    max_in_progress: int = setting(16, positive)


@dataclass(frozen=True)
class SmsConfig:
    code_ttl: int = setting(300, positive)
    resend_interval: int = setting(60, positive)
    template_id: str = "1"
    mobile_changed_template_id: str = "2"
    webotp_domain: str = setting("", host_name_or_empty)


@dataclass(frozen=True)
class RonglianConfig:
    base_url: str = "http://127.0.0.1:8883"
    account_sid: str = "8aaf0708a2b3c4d5e6f7a8b9c0d1e2f3"
    auth_token: str = "sandbox0token0000000000000000000a"
    app_id: str = "8aaf0708app0000000000000000000ab"
    connect_timeout: float = 2.0
    request_timeout: float = setting(5.0, positive)
    max_clients: int = setting(100, positive)


@dataclass(frozen=True)
class AliyunConfig:
    base_url: str = "http://127.0.0.1:8884"
    access_key_id: str = "LTAI5tSandboxAccessKey01"
    access_key_secret: str = "sandbox0secret000000000000000a"
    sign_name: str = "阿里云短信测试"
    template_code: str = "SMS_154950909"
    connect_timeout: float = 2.0
    request_timeout: float = setting(5.0, positive)


@dataclass(frozen=True)
class FailoverConfig:
    breaker_failures: int = setting(3, positive)
    breaker_cooldown: float = setting(30.0, positive)


@dataclass(frozen=True)
class CostsConfig:
    # CNY per billed unit: an SMS part (70 characters, 67 per part of a long one), a call minute.
    ronglian_sms: float = setting(0.05, at_least(0, "0 or more"))
    ronglian_voice: float = setting(0.12, at_least(0, "0 or more"))
    aliyun_sms: float = setting(0.045, at_least(0, "0 or more"))
    # The templates' wording as registered with each provider (their billed length).
    ronglian_sms_text: str = (
        "【云通讯】您使用的是云通讯短信模板，您的验证码是{1}，请于{2}分钟内正确输入"
    )
    aliyun_sms_text: str = "您的验证码为：${code}，请勿泄露于他人！"


@dataclass(frozen=True)
class OpsConfig:
    # Who may open /ops: user ids or mobiles, comma-separated; empty = nobody.
    operators: str = setting("", parsed_by(operator_list))
    allow: str = setting("127.0.0.0/8, ::1/128", networks)
    history_hours: int = setting(6, between(1, 48, "between 1 and 48"))


@dataclass(frozen=True)
class VoiceConfig:
    play_times: int = setting(2, between(1, 3, "1, 2 or 3"))
    display_num: str = ""
    lang: str = setting("zh", one_of("zh", "en"))
    # No calls in the quiet hours (local time of `timezone`); start == end: no quiet hours.
    quiet_start: str = setting("22:00", clock)
    quiet_end: str = setting("07:30", clock)
    timezone: str = setting("Asia/Shanghai", time_zone)


@dataclass(frozen=True)
class ReceiptsConfig:
    # Providers push receipts to {public_base_url}/callbacks/{callback_token}/<provider>/<kind>.
    callback_token: str = setting("change-me-callback-token-00000000", url_token)
    allowed_sources: str = setting("", networks)
    public_base_url: str = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class FraudConfig:
    enabled: bool = True
    window: int = setting(3600, positive)
    buckets: int = setting(12, positive)
    min_sends: int = setting(3, positive)
    min_conversion_percent: int = setting(20, positive, at_most(100))
    elevated_sends: int = setting(3, positive)
    cooldown: int = setting(3600, positive)
    budget_share_newcomer: float = setting(0.8, positive, fraction)
    budget_share_poor: float = setting(0.5, positive, fraction)
    budget_alert_ratio: float = setting(0.8, positive, fraction)
    pow_cost: int = setting(50, positive)
    pow_max_counter: int = setting(2000, positive)
    pow_ttl: int = setting(300, positive)
    pow_max_level: int = setting(10, positive, at_most(20))
    levels_per_send: int = setting(2, positive)
    credit_per_conversion: int = setting(1, positive)


@dataclass(frozen=True)
class TokensConfig:
    # The keyring (python -m tools.keys): a JSON file naming the signing keys' PEM files.
    # Empty: development signs with a key derived from security.cookie_secret; production
    # refuses to start (checks._refuse_placeholders).
    keyring: str = setting("", keyring_or_empty)
    issuer: str = setting("smsreg", non_empty)
    audience: str = setting("smsreg-api", non_empty)
    access_ttl: int = setting(900, between(30, 900, "between 30 and 900 (15 minutes)"))
    refresh_ttl: int = setting(2592000, positive)
    cors_origins: str = setting("", web_origins)


@dataclass(frozen=True)
class HostAppConfig:
    """The tutorial app this server is a drop-in for (docs/INTEGRATION.md, "Host apps"):
    its user table, its password hash format, its framework's sessions and CSRF tokens."""

    kind: str = setting("standalone", one_of("standalone", "ihome", "meiduo", "news"))
    redis_url: str = ""  # the host app's session Redis (checked unless standalone)
    secret_key: str = ""  # the host app's SECRET_KEY (checked unless standalone)
    serialization: str = setting("pickle", one_of("pickle", "msgpack", "json"))
    session_lifetime: int = setting(86400, positive)
    permanent_session: bool = True
    use_signer: bool = True
    session_key_prefix: str = "session:"
    django_auth_backend: str = setting("users.utils.UsernameMobileAuthBackend", non_empty)
    django_hash_algorithm: str = setting("sha256", one_of("sha256", "sha1"))
    werkzeug_iterations: int = setting(600000, at_least(50000, "50000 or more"))

    @property
    def standalone(self) -> bool:
        return self.kind == "standalone"

    @property
    def flask(self) -> bool:
        """ihome and news: Flask, Flask-Session, Flask-WTF, Werkzeug hashes."""
        return self.kind in ("ihome", "news")


@dataclass(frozen=True)
class BrandConfig:
    """Who the pages say they are (docs/CONFIGURATION.md, "brand")."""

    site_name: str = setting("爱家租房", non_empty)
    logo_url: str = setting("", site_path_or_empty)  # empty: site_name's first character
    colour: str = setting("#c2410c", white_text_colour)
    colour_dark: str = setting("#9a3412", white_text_colour)
    support_phone: str = ""
    support_email: str = ""


@dataclass(frozen=True)
class ConsentConfig:
    """The agreements a user accepts on sign-up (docs/SECURITY.md, "Consent")."""

    terms_url: str = setting("/terms.html", page_url)
    terms_version: str = setting("2026-01-01", version_label)
    privacy_url: str = setting("/privacy.html", page_url)
    privacy_version: str = setting("2026-01-01", version_label)
    # The tutorial front-ends send no `agree`: must their sign-ups carry one anyway?
    require_from_ihome: bool = False
    require_from_news: bool = False


@dataclass(frozen=True)
class DeletionConfig:
    """Account deletion (注销): the cooling-off period and the purge (docs/SECURITY.md)."""

    cooling_off_days: int = setting(15, at_least(0, "0 (purged at the next run) or more"))
    claim_lease: int = setting(3600, positive)
    purge_batch: int = setting(100, positive)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting("INFO", log_level)
    format: str = setting("text", one_of("text", "json"))


@dataclass(frozen=True)
class Config:
    mode: str = setting("development", one_of("development", "production"))
    server: ServerConfig = field(default_factory=ServerConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    families: FamiliesConfig = field(default_factory=FamiliesConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    mysql: MysqlConfig = field(default_factory=MysqlConfig)
    captcha: CaptchaConfig = field(default_factory=CaptchaConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    ronglian: RonglianConfig = field(default_factory=RonglianConfig)
    providers: tuple[str, ...] = setting(("ronglian", "aliyun"), provider_list)
    aliyun: AliyunConfig = field(default_factory=AliyunConfig)
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    receipts: ReceiptsConfig = field(default_factory=ReceiptsConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    fraud: FraudConfig = field(default_factory=FraudConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    host_app: HostAppConfig = field(default_factory=HostAppConfig)
    costs: CostsConfig = field(default_factory=CostsConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    brand: BrandConfig = field(default_factory=BrandConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    deletion: DeletionConfig = field(default_factory=DeletionConfig)

    def replace(self, **sections: dict[str, object]) -> Config:
        """Return a copy with some settings changed, e.g. replace(redis={"url": ...})."""
        changes = {
            name: dataclasses.replace(getattr(self, name), **values)
            if isinstance(values, dict)
            else values  # a top-level setting such as providers=("ronglian", "aliyun")
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changes)
