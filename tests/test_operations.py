"""Operators' view: metrics, health, readiness, request ids, JSON logs, several processes."""

from __future__ import annotations

import json
import urllib.request

import pytest

from devstack.processes import RedisServer
from tests.conftest import LiveServer, serving
from tests.flows import metric
from tests.polling import wait_until


@pytest.mark.gen_test(timeout=60)
async def test_metrics_count_the_flow(client, sandbox, fresh_mobile):
    mobile = fresh_mobile()
    text = await client.new_captcha("m-1")
    assert (await client.send_sms(mobile, text, "m-1"))["errno"] == "0"
    text = await client.new_captcha("m-2")
    assert (await client.send_sms(mobile, text, "m-2"))["errno"] == "4201"
    sandbox.set_fault(mode="status", status_code="160040", times=1)
    text = await client.new_captcha("m-3")
    assert (await client.send_sms(fresh_mobile(), text, "m-3"))["errno"] == "4301"
    response = await client.fetch("/metrics")
    assert response.code == 200 and response.headers["Content-Type"].startswith("text/plain")
    body = response.body.decode()
    assert metric(body, "smsreg_captchas_rendered_total", kind="image") == 3
    assert metric(body, "smsreg_sms_sends_total", status_code="000000") == 1
    assert metric(body, "smsreg_sms_sends_total", status_code="160040") == 1
    assert metric(body, "smsreg_refusals_total", reason="resend_interval") == 1
    assert metric(body, "smsreg_provider_duration_seconds_count") == 2
    ok = metric(body, "smsreg_requests_total", route="sms_codes", method="GET", errno="0")
    assert ok == 1
    assert metric(body, "smsreg_request_duration_seconds_count", route="image_codes") == 3


@pytest.mark.gen_test(timeout=30)
async def test_health_and_request_id(client):
    response = await client.fetch("/healthz")
    assert response.code == 200 and json.loads(response.body) == {"status": "ok"}
    ready = await client.fetch("/readyz")
    assert json.loads(ready.body) == {"status": "ready", "redis": "ok", "mysql": "ok"}
    first = (await client.fetch("/api/v1.0/session")).headers["X-Request-Id"]
    second = (await client.fetch("/api/v1.0/session")).headers["X-Request-Id"]
    assert len(first) == 16 and first != second


@pytest.mark.gen_test(timeout=30)
async def test_readyz_is_503_while_redis_is_down(make_app, tmp_path):
    redis = RedisServer(tmp_path / "r").start()
    try:
        app = await make_app(redis={"url": redis.url})
        async with serving(app) as client:
            redis.stop()
            response = await client.fetch("/readyz")
            assert response.code == 503
            assert json.loads(response.body) == {
                "status": "unavailable",
                "redis": "down",
                "mysql": "ok",
            }
            assert (await client.fetch("/healthz")).code == 200  # alive, just not ready
    finally:
        redis.stop()


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_json_logs_one_line_per_request(config, clean_state, tmp_path):
    log_path = tmp_path / "server.log"
    server = LiveServer(config, log_path, {"SMSREG_LOGGING_FORMAT": "json"}).start()
    try:
        get(f"{server.base_url}/api/v1.0/image_codes/json-log")
    finally:
        assert server.stop() == 0
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    [access] = [e for e in entries if e["logger"] == "smsreg.access"]
    assert access["route"] == "image_codes" and access["errno"] == "0"
    assert access["status"] == 200 and len(access["request_id"]) == 16
    assert "json-log" not in json.dumps(entries)  # ids and query strings stay out of logs


def test_two_processes_share_the_port_and_sum_metrics(config, clean_state, tmp_path, sandbox):
    server = LiveServer(config, tmp_path / "server.log")
    server.args = ["--processes", "2"]
    server.start()
    try:
        for i in range(40):
            status, _ = get(f"{server.base_url}/api/v1.0/image_codes/p-{i}")
            assert status == 200

        # A worker counts a request just after answering it, so the last count may land after
        # the client has its answer: wait for the sum to settle, and check it never passes 40.
        def metrics_text() -> str:
            return get(f"{server.base_url}/metrics")[1].decode()

        def served(text: str) -> float:
            labels = {"route": "image_codes", "method": "GET", "errno": "0"}
            return metric(text, "smsreg_requests_total", **labels)

        text = wait_until(metrics_text, lambda t: served(t) >= 40, what="40 requests in /metrics")
        assert served(text) == 40
        # Drawn ahead by both workers' pools, so at least as many as served.
        assert metric(text, "smsreg_captchas_rendered_total", kind="image") >= 40

        def access_pids() -> set[str]:
            lines = server.log_path.read_text().splitlines()
            return {line.split()[2] for line in lines if "smsreg.access" in line}

        pids = wait_until(access_pids, lambda p: len(p) == 2, what="both workers logging")
        assert len(pids) == 2  # both workers served requests
    finally:
        assert server.stop() == 0
