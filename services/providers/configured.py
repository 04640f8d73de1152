"""The providers of `providers:` in config, in order, each behind its own circuit breaker."""

from __future__ import annotations

from collections.abc import Callable

from tornado.curl_httpclient import CurlAsyncHTTPClient

from services.codes.costs import SmsPricing
from services.config import Config
from services.metrics import Metrics
from services.ops.history import SendHistory
from services.providers.aliyun import AliyunProvider
from services.providers.base import CodeSender
from services.providers.failover import CircuitBreaker, FailoverSender
from services.providers.ronglian import RonglianClient, RonglianProvider, VoiceSettings


def configured_sender(
    config: Config,
    http: CurlAsyncHTTPClient,
    ronglian: RonglianClient,
    metrics: Metrics,
    pricing: SmsPricing,
    history: SendHistory,
) -> FailoverSender:
    """The configured providers, in order, each behind its own circuit breaker."""
    available: dict[str, Callable[[], CodeSender]] = {
        "ronglian": lambda: RonglianProvider(
            ronglian,
            config.sms.template_id,
            VoiceSettings(
                config.voice.play_times,
                config.voice.display_num,
                config.voice.lang,
                f"{config.receipts.public_base_url.rstrip('/')}/callbacks/"
                f"{config.receipts.callback_token}/ronglian/voice",
            ),
            config.sms.webotp_domain,
        ),
        "aliyun": lambda: AliyunProvider(http, config.aliyun),
    }
    providers = [available[name]() for name in config.providers]
    breakers = {
        p.name: CircuitBreaker(config.failover.breaker_failures, config.failover.breaker_cooldown)
        for p in providers
    }
    return FailoverSender(providers, breakers, metrics, pricing, history)
