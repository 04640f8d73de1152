"""server.py as operators run it: start-up config errors, the live flow, and graceful drain."""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.parse
import urllib.request

from services.store import keys
from tests.flows import run_server
from tests.polling import wait_until


def test_unknown_config_key_stops_startup_with_one_line(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("server:\n  prot: 8000\n")
    result = run_server("--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == "config error: unknown config key 'server.prot'"


def test_wrong_type_stops_startup_with_one_line(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("redis:\n  socket_timeout: soon\n")
    result = run_server("--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "'redis.socket_timeout' must be float" in result.stderr


def test_production_mode_refuses_placeholder_secrets():
    env = {**os.environ, "SMSREG_MODE": "production"}
    result = run_server(env=env)
    assert result.returncode == 2
    assert "production mode refuses" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_mysql_at_start_is_one_line():
    # A port bound but not listening refuses every connection, and no other process can take
    # it meanwhile (a free_port() can be grabbed by a parallel test's server before we use it).
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        env = {**os.environ, "SMSREG_MYSQL_PORT": str(port), "SMSREG_MYSQL_CONNECT_TIMEOUT": "1"}
        result = run_server("--port", "0", env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith("startup failed: (2003"), result.stderr
    assert "Traceback" not in result.stderr


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_sigterm_during_slow_send_still_answers_the_client(live_server, sandbox, redis_server):
    import redis as sync_redis

    mobile = "13700000001"
    urllib.request.urlopen(
        f"{live_server.base_url}/api/v1.0/image_codes/drain-1", timeout=10
    ).close()
    with sync_redis.Redis(port=redis_server.port, decode_responses=True) as client:
        text = client.get("image_code:drain-1")
    sandbox.set_fault(latency_ms=1000)
    query = urllib.parse.urlencode({"image_code": text, "image_code_id": "drain-1"})
    answers: list[dict] = []
    request = threading.Thread(
        target=lambda: answers.append(
            _get_json(f"{live_server.base_url}/api/v1.0/sms_codes/{mobile}?{query}")
        )
    )
    request.start()
    with sync_redis.Redis(port=redis_server.port, decode_responses=True) as client:
        # The resend guard is set just before the send goes out: from then on the request is
        # in flight, held by the slow provider, and the drain must let it finish.
        wait_until(lambda: client.exists(keys.sms_guard_key(mobile)), what="the send in flight")
    assert live_server.stop() == 0
    request.join(10)
    for answer in answers:
        answer.get("data", {}).pop("send_id", None)
    assert answers == [{"errno": "0", "errmsg": "发送成功", "data": {"retry_after": 60}}]
    assert len(sandbox.inbox(mobile)) == 1
