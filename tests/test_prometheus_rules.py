"""docs/deploy/prometheus/: the rules are valid, pass their promtool unit tests, use only
metrics the server exports, and a real Prometheus scraping a live server records them."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request

import pytest
import yaml

from devstack.processes import free_port, start_listening, stop_process
from tests.polling import wait_until
from tests.promql import (
    FOREIGN_SERIES,
    PROMETHEUS_DIR,
    RULES,
    exported_series,
    metric_names,
    promtool,
)

RULES_TESTS = PROMETHEUS_DIR / "smsreg-rules.test.yml"
SAMPLE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 18 rules found" in result.stdout


def test_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", RULES_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_use_only_metrics_the_server_exports():
    used = set().union(*map(metric_names, rule_expressions()))
    assert "smsreg_event_loop_lag_seconds" in used  # the parsing above finds names
    assert used - exported_series() - FOREIGN_SERIES == set()


def test_the_sample_prometheus_config_is_valid(tmp_path):
    # promtool resolves rule_files next to the config: check a copy beside the rules.
    config = yaml.safe_load(SAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["smsreg-rules.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"smsreg", "smsreg_readyz"} <= jobs  # the names the rules' up and probe_success use
    result = promtool("check", "config", SAMPLE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def query(base_url: str, expr: str) -> list[dict]:
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def rules_health(base_url: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{base_url}/api/v1/rules", timeout=10) as response:
        groups = json.loads(response.read())["data"]["groups"]
    return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}


def touch_sms_route(server_url: str) -> None:
    """One SMS-code request (a wrong CAPTCHA: refused, nothing sent), counted by route."""
    url = f"{server_url}/api/v1.0/sms_codes/13800138000?image_code=XXXX&image_code_id=nope"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def prometheus(live_server, tmp_path):
    """A real Prometheus scraping the live server every second, with the shipped rules."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "smsreg",
                "static_configs": [{"targets": [f"127.0.0.1:{live_server.port}"]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    args = [
        PROMETHEUS,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = start_listening(args, port, tmp_path / "prometheus.log", name="prometheus")
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


def test_prometheus_scrapes_a_live_server_and_records_the_rules(live_server, prometheus):
    def sms_request_rate() -> list[dict]:
        touch_sms_route(live_server.base_url)  # keep the counter growing between scrapes
        return query(prometheus, "smsreg:sms_requests:rate5m")

    result = wait_until(
        sms_request_rate,
        lambda rows: any(float(row["value"][1]) > 0 for row in rows),
        what="smsreg:sms_requests:rate5m recorded from the live server",
        patience=90,
    )
    assert [row["metric"]["errno"] for row in result] == ["4002"]  # NODATA: no such CAPTCHA
    assert query(prometheus, 'up{job="smsreg"}')[0]["value"][1] == "1"
    assert query(prometheus, "smsreg_event_loop_lag_seconds")  # sampled even with a fixed bound
    # Every rule was evaluated without an error against the real series.
    health = wait_until(
        lambda: rules_health(prometheus),
        lambda rules: len(rules) == 18 and "unknown" not in rules.values(),
        what="every rule evaluated",
        patience=60,
    )
    assert set(health.values()) == {"ok"}, health
