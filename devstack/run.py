"""`make run`: Redis, MariaDB and the Ronglian and Aliyun sandboxes on loopback, then the server.

Data lives under var/ (git-ignored). Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from devstack.processes import REDIS_PERSISTENT, MariaDBServer, RedisServer, start_listening
from services.config import load_config

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
# The templates config.yml names: the code template, the mobile-changed notice, a WebOTP one.
SANDBOX_TEMPLATES = ROOT / "devstack" / "sandbox-templates.json"
# Not the packages' default ports, so a system redis/mariadb service can keep running beside us.
REDIS_PORT = 6380
MARIADB_PORT = 3307
SANDBOX_PORT = 8883
ALIYUN_SANDBOX_PORT = 8884


def callback_url(kind: str) -> str:
    """Where the sandboxes push delivery receipts: the server's callback route."""
    config = load_config(ROOT / "config.yml")
    base = f"http://127.0.0.1:{config.server.port}"
    return f"{base}/callbacks/{config.receipts.callback_token}/{kind}"


def dev_redis(directory: Path = VAR / "redis", port: int = REDIS_PORT) -> RedisServer:
    """`make run`'s Redis: sessions, limits and fraud state survive its restart, as in
    production (the append-only file, fsynced every second; tests/test_redis_restart.py)."""
    return RedisServer(directory, port=port, extra=REDIS_PERSISTENT)


def main() -> int:
    redis = dev_redis()
    mariadb = MariaDBServer(VAR / "mariadb", port=MARIADB_PORT)
    sandbox: subprocess.Popen | None = None
    aliyun: subprocess.Popen | None = None
    server: subprocess.Popen | None = None
    try:
        redis.start()
        print(f"redis      127.0.0.1:{REDIS_PORT}   (data in var/redis, AOF)", flush=True)
        mariadb.start()
        print(f"mariadb    127.0.0.1:{MARIADB_PORT}   (data in var/mariadb)", flush=True)
        sandbox = start_listening(
            [
                sys.executable, "-m", "sandbox.ronglian", "--port", str(SANDBOX_PORT),
                "--report-url", callback_url("ronglian/sms"),
                "--config-json", str(SANDBOX_TEMPLATES),
            ],
            SANDBOX_PORT,
            None,
            timeout=10,
            cwd=ROOT,
        )  # fmt: skip
        print(f"ronglian   http://127.0.0.1:{SANDBOX_PORT}/inbox   (sandbox inbox)", flush=True)
        aliyun = start_listening(
            [
                sys.executable, "-m", "sandbox.aliyun", "--port", str(ALIYUN_SANDBOX_PORT),
                "--report-url", callback_url("aliyun/sms"),
            ],
            ALIYUN_SANDBOX_PORT,
            None,
            timeout=10,
            cwd=ROOT,
        )  # fmt: skip
        print(
            f"aliyun     http://127.0.0.1:{ALIYUN_SANDBOX_PORT}/inbox   (sandbox inbox)", flush=True
        )
        env = {
            **os.environ,
            "SMSREG_REDIS_URL": redis.url,
            "SMSREG_MYSQL_PORT": str(MARIADB_PORT),
            "SMSREG_RONGLIAN_BASE_URL": f"http://127.0.0.1:{SANDBOX_PORT}",
            "SMSREG_ALIYUN_BASE_URL": f"http://127.0.0.1:{ALIYUN_SANDBOX_PORT}",
        }
        server = subprocess.Popen([sys.executable, "server.py", *sys.argv[1:]], cwd=ROOT, env=env)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # Ctrl-C reaches every child of the terminal; SIGTERM covers a `kill` of make itself.
        for process in (server, sandbox, aliyun):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        mariadb.stop()
        redis.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
