"""Prometheus metrics, aware of server.py's multi-process mode.

prometheus_client decides at import time whether values live in per-process files
(PROMETHEUS_MULTIPROC_DIR set) or in memory, so it is imported here lazily: server.py sets
that variable before the first Metrics object exists in a worker.
"""

from __future__ import annotations

import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Label values come from closed sets only: a label taken as sent (an 8 KB junk method) would
# add a series per request, forever, per process.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "OTHER"
# Delivery takes seconds to minutes; 60/300/600 s let "no receipt after N minutes" be read off.
DELIVERY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def method_label(method: str | None) -> str:
    """The HTTP method as a metrics and log label: a standard method, else OTHER."""
    return method if method in HTTP_METHODS else OTHER_METHOD


class Metrics:
    """The numbers operators watch: requests, SMS sends, provider latency, refusals, CAPTCHAs."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        # A registry per instance (not the global one): tests build many applications.
        self.registry = CollectorRegistry()

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

        self.requests = counter(
            "smsreg_requests_total",
            "HTTP requests by route, method and outcome (errno, or '-' for non-API answers)",
            *("route", "method", "errno"),
        )
        self.request_seconds = histogram(
            "smsreg_request_duration_seconds", "Time to answer, by route", LATENCY_BUCKETS, "route"
        )
        self.sms_sends = counter(
            "smsreg_sms_sends_total",
            "SMS send attempts by Ronglian statusCode (or transport failure)",
            "status_code",
        )
        self.provider_seconds = histogram(
            "smsreg_provider_duration_seconds",
            "Ronglian TemplateSMS call duration",
            LATENCY_BUCKETS,
        )
        self.provider_attempts = counter(
            "smsreg_provider_attempts_total",
            "Send attempts by provider, channel and outcome (sent, provider_failed, "
            "number_refused, unknown, skipped_open)",
            *("provider", "channel", "outcome"),
        )
        self.provider_call_seconds = histogram(
            "smsreg_provider_call_duration_seconds",
            "Duration of one provider API call, by provider",
            LATENCY_BUCKETS,
            "provider",
        )
        self.receipts = counter(
            "smsreg_receipts_total",
            "Delivery receipts by provider, channel and result: delivered and failed are a "
            "send's final status; duplicate and unmatched receipts change nothing",
            *("provider", "channel", "status"),
        )
        self.sms_cost = counter(
            "smsreg_sms_cost_yuan",
            "What accepted sends cost in CNY at the configured prices (costs.*), by provider and "
            "channel: an SMS's billed parts, a call's started minutes",
            *("provider", "channel"),
        )
        self.delivery_seconds = histogram(
            "smsreg_delivery_latency_seconds",
            "From the provider accepting a send to its receipt, by provider and channel",
            DELIVERY_BUCKETS,
            *("provider", "channel"),
        )
        self.refusals = counter(
            "smsreg_refusals_total", "Requests refused by a rate limit, by limit", "reason"
        )
        self.sends_in_flight = Gauge(
            "smsreg_sms_sends_in_flight",
            "SMS sends admitted and not yet answered (admission.max_sends_in_flight per process)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # The largest over the processes: one saturated worker is what the alert is about.
        self.loop_lag = Gauge(
            "smsreg_event_loop_lag_seconds",
            "How late the event loop ran a task due now (sampled every 50 ms), worst process",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.captchas = counter(
            "smsreg_captchas_rendered_total", "CAPTCHAs rendered, by kind (image or audio)", "kind"
        )
        self.fraud_segment_state = counter(
            "smsreg_fraud_segment_state",
            "Fraud segments entering a breaker state, by segment kind (blk, net, ip) and state",
            *("kind", "state"),
        )
        self.fraud_budget_alerts = counter(
            "smsreg_fraud_budget_alerts",
            "SMS sent while the global hourly budget was past fraud.budget_alert_ratio",
        )
        self.pow_challenges = counter(
            "smsreg_fraud_pow_challenges",
            "Proof-of-work challenges issued to requests in elevated segments",
        )
        self.mysql_events = counter(
            "smsreg_mysql_events",
            "MySQL cluster events: conflicts (error 1213), conflict_retries, failovers",
            "event",
        )

    def count_mysql_event(self, event: str) -> None:
        self.mysql_events.labels(event).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format for GET /metrics, summed over all worker processes if forked."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
