"""Validation of a loaded configuration: every setting's own rules (declared in sections.py,
applied here in one loop), the few rules between settings, and what production refuses."""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

from services.config.rules import PROVIDER_NAMES, Rule, cluster_nodes
from services.config.sections import RULES, AliyunConfig, Config, RonglianConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ENV_PREFIX = "SMSREG_"
PLACEHOLDER_MARK = "change-me"
# Settings that production mode refuses to run with while they hold the shipped sandbox value.
SANDBOX_SECRETS = {
    ("ronglian", "auth_token"): RonglianConfig.auth_token,
    ("ronglian", "account_sid"): RonglianConfig.account_sid,
    ("ronglian", "app_id"): RonglianConfig.app_id,
    ("aliyun", "access_key_secret"): AliyunConfig.access_key_secret,
    ("aliyun", "access_key_id"): AliyunConfig.access_key_id,
}


class ConfigError(Exception):
    """A configuration problem, reported to the operator as one line."""


def refuse(dotted: str, problem: str) -> ConfigError:
    """The one wording of a setting's problem: "config key 'a.b' must be …" / "…': why"."""
    return ConfigError(f"config key {dotted!r}{'' if problem.startswith(':') else ' '}{problem}")


def check_settings(config: Config) -> None:
    """Raise ConfigError for the first setting that breaks a rule, then check production."""
    for dotted, value, rules in _settings(config, ""):
        for rule in rules:
            problem = rule(value)
            if problem:
                raise refuse(dotted, problem)
    for dotted, problem in _between_settings(config):
        raise refuse(dotted, problem)
    if config.mode == "production":
        _refuse_placeholders(config)


def _settings(
    section: DataclassInstance, where: str
) -> Iterator[tuple[str, object, tuple[Rule, ...]]]:
    """(dotted name, value, rules) of every setting, section by section."""
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        dotted = f"{where}.{item.name}" if where else item.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _settings(value, dotted)
        else:
            yield dotted, value, item.metadata.get(RULES, ())


def _between_settings(config: Config) -> Iterator[tuple[str, str]]:
    """(setting, problem) for each rule between settings that config breaks."""
    if config.redis.mode == "cluster":
        try:
            cluster_nodes(config.redis.cluster_nodes)
        except ValueError as exc:
            yield "redis.cluster_nodes", f": {exc}"
    if config.fraud.window < config.fraud.buckets:
        yield "fraud.window", "must be at least 'fraud.buckets' seconds"
    host = config.host_app
    if not host.standalone:
        for name in ("redis_url", "secret_key"):
            if not getattr(host, name):
                yield f"host_app.{name}", f"must be set when 'host_app.kind' is {host.kind}"
    if config.mysql.pool_min > config.mysql.pool_max:
        yield "mysql.pool_min", "must not exceed 'mysql.pool_max'"
    if config.limits.audio_captcha_cost > config.limits.captcha_per_ip_minute:
        yield (
            "limits.audio_captcha_cost",
            "must not exceed 'captcha_per_ip_minute' (no audio CAPTCHA could ever be served)",
        )


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
            raise refuse(f"security.{dotted}", "must be at least 32 characters")
    if not config.security.secure_cookies:
        raise ConfigError(
            "production mode refuses 'security.secure_cookies: false': session cookies must "
            "only travel over HTTPS"
        )
    for provider in config.providers:
        _refuse_sandbox_url(provider, getattr(config, provider).base_url)
    if not config.tokens.keyring:
        raise ConfigError(
            "production mode refuses an empty 'tokens.keyring': access tokens need a signing "
            "key file (python -m tools.keys --keyring PATH new); set SMSREG_TOKENS_KEYRING"
        )


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
