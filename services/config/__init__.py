"""Typed configuration: loaded once from config.yml, overridden by the environment, validated.

sections.py: the settings, their defaults and rules; rules.py: the rules and the parsers of
settings written as text; loading.py: file, environment, types; checks.py: validation.
"""

from services.config.checks import ENV_PREFIX, ConfigError
from services.config.loading import load_config
from services.config.rules import (
    PROVIDER_NAMES,
    VOICES_DIR,
    clock_time,
    cluster_nodes,
    host_port_list,
    listen_hosts,
    operator_list,
)
from services.config.sections import (
    AccountsConfig,
    AdmissionConfig,
    AliyunConfig,
    CaptchaConfig,
    Config,
    CostsConfig,
    FailoverConfig,
    FamiliesConfig,
    FraudConfig,
    LimitsConfig,
    LoggingConfig,
    MysqlConfig,
    OpsConfig,
    ReceiptsConfig,
    RedisConfig,
    RonglianConfig,
    SecurityConfig,
    ServerConfig,
    SmsConfig,
    TokensConfig,
    VoiceConfig,
)

__all__ = [
    "ENV_PREFIX",
    "PROVIDER_NAMES",
    "VOICES_DIR",
    "AccountsConfig",
    "AdmissionConfig",
    "AliyunConfig",
    "CaptchaConfig",
    "Config",
    "ConfigError",
    "CostsConfig",
    "FailoverConfig",
    "FamiliesConfig",
    "FraudConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MysqlConfig",
    "OpsConfig",
    "ReceiptsConfig",
    "RedisConfig",
    "RonglianConfig",
    "SecurityConfig",
    "ServerConfig",
    "SmsConfig",
    "TokensConfig",
    "VoiceConfig",
    "clock_time",
    "cluster_nodes",
    "host_port_list",
    "listen_hosts",
    "load_config",
    "operator_list",
]
