"""A login flood, before and after the defence, side by side in one run.

    .venv/bin/python -m bench.login_flood [--flood-seconds 30] [--clients 40]

Starts one redis-server, one MariaDB and the Ronglian sandbox (bench/send_cpu.backing_servers),
then, for each configuration in turn, one `server.py` process (1 worker) behind a trusted proxy:

- before: no bound on password hashes, no adaptive CAPTCHA
  (`accounts.max_hashes_in_flight: 0`, `accounts.login_global_captcha_after: 0`);
- after: the shipped settings (config.yml).

Each phase: a legitimate user logs in alone for a few seconds (the baseline), then `--clients`
flood clients send wrong-password logins as fast as they are answered, each attempt for another
(unknown) account from another address (`X-Forwarded-For`), while the same user keeps logging
in. The user does what the front-end does: a CAPTCHA when asked (fetched from the server, its
answer read from Redis as a person would read the image), a wait of `Retry-After` when shed.
Reported per phase: the user's login requests (p50/p99 ms) and the time from the first request
to being logged in (CAPTCHA and waits included), and what the flood's attempts got. Raw numbers
go to bench/results/login-flood.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import argon2
import pymysql
import redis as sync_redis
import tornado.httpclient
from tornado.curl_httpclient import CurlAsyncHTTPClient

from bench.send_cpu import backing_servers
from bench.stack import ROOT, Proc
from devstack.processes import free_port

RESULTS = ROOT / "bench" / "results" / "login-flood.json"
USER_MOBILE = "15900000001"
USER_PASSWORD = "legit-pass-2024"
USER_IP = "198.51.100.1"
XSRF = {"Cookie": "_xsrf=bench-token", "X-XSRFToken": "bench-token"}
PHASES = {
    "before": {
        "SMSREG_ACCOUNTS_MAX_HASHES_IN_FLIGHT": "0",
        "SMSREG_ACCOUNTS_LOGIN_GLOBAL_CAPTCHA_AFTER": "0",
    },
    "after": {},  # config.yml as shipped
}


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: list[float]) -> dict[str, float | int]:
    """count, p50 and p99 of seconds, in ms."""
    return {
        "count": len(values),
        "p50_ms": round(1000 * percentile(values, 0.50), 1),
        "p99_ms": round(1000 * percentile(values, 0.99), 1),
    }


class Target:
    """One server.py under test, spoken to as the ihome front-end does."""

    def __init__(self, port: int, redis: sync_redis.Redis) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.redis = redis
        self.http = CurlAsyncHTTPClient(force_instance=True, max_clients=128)

    async def login(self, mobile: str, password: str, ip: str, **extra: str):
        body = json.dumps({"mobile": mobile, "password": password, **extra})
        headers = {**XSRF, "Content-Type": "application/json", "X-Forwarded-For": ip}
        return await self.http.fetch(
            f"{self.base}/api/v1.0/sessions",
            method="POST",
            body=body,
            headers=headers,
            raise_error=False,
            request_timeout=60,
        )

    async def captcha(self, captcha_id: str) -> str:
        """A CAPTCHA image from the server; its answer, as the user reads it."""
        url = f"{self.base}/api/v1.0/image_codes/{captcha_id}"
        headers = {"X-Forwarded-For": USER_IP}
        await self.http.fetch(url, headers=headers, request_timeout=60)
        return self.redis.get(f"image_code:{captcha_id}") or ""


def outcome(response: tornado.httpclient.HTTPResponse) -> str:
    """What an answer was: ok, wrong (a hash was checked), captcha, overloaded or other."""
    if response.code == 503:
        return "overloaded"
    if response.code != 200:
        return f"http_{response.code}"
    body = json.loads(response.body)
    reason = (body.get("data") or {}).get("reason")
    if body["errno"] == "0":
        return "ok"
    if reason == "captcha_required":
        return "captcha"
    return "wrong" if body["errno"] == "4004" else f"errno_{body['errno']}_{reason}"


async def legit_user(target: Target, until: float, record: dict) -> None:
    """Log in again and again until `until`, as the front-end would: CAPTCHA, Retry-After."""
    captchas = itertools.count()
    while time.monotonic() < until:
        started, extra = time.monotonic(), {}
        while True:
            t0 = time.monotonic()
            response = await target.login(USER_MOBILE, USER_PASSWORD, USER_IP, **extra)
            record["requests"].append(time.monotonic() - t0)
            got = outcome(response)
            record["outcomes"][got] = record["outcomes"].get(got, 0) + 1
            if got == "ok":
                break
            if got == "captcha":
                captcha_id = f"legit-{next(captchas)}"
                extra = {
                    "image_code_id": captcha_id,
                    "image_code": await target.captcha(captcha_id),
                }
            elif got == "overloaded":
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            else:
                raise SystemExit(f"legitimate login refused: {got} {response.body[:200]!r}")
        record["logged_in"].append(time.monotonic() - started)
        await asyncio.sleep(0.1)  # a person does not log in back to back


async def flood_client(target: Target, index: int, until: float, counts: dict) -> None:
    """Wrong passwords, each for another unknown account from another address."""
    for n in itertools.count():
        if time.monotonic() >= until:
            return
        serial = index * 1_000_000 + n
        mobile = f"13{serial:09d}"
        ip = f"10.{serial // 65536 % 256}.{serial // 256 % 256}.{serial % 256}"
        response = await target.login(mobile, "wrong-password-1", ip)
        got = outcome(response)
        counts[got] = counts.get(got, 0) + 1


async def measure(
    port: int, redis: sync_redis.Redis, clients: int, alone: float, flooded: float
) -> dict:
    """The user alone, then under the flood: what each got."""
    target = Target(port, redis)  # its HTTP client belongs to this event loop
    await target.login(USER_MOBILE, USER_PASSWORD, USER_IP)  # warm-up: decoy, pools, scripts
    result: dict = {}
    baseline = {"requests": [], "logged_in": [], "outcomes": {}}
    await legit_user(target, time.monotonic() + alone, baseline)
    during = {"requests": [], "logged_in": [], "outcomes": {}}
    flood: dict[str, int] = {}
    until = time.monotonic() + flooded
    started = time.monotonic()
    await asyncio.gather(
        legit_user(target, until, during),
        *(flood_client(target, i + 1, until, flood) for i in range(clients)),
    )
    elapsed = time.monotonic() - started
    for name, record in (("alone", baseline), ("flood", during)):
        result[name] = {
            "request": summary(record["requests"]),
            "logged_in": summary(record["logged_in"]),
            "outcomes": record["outcomes"],
        }
    result["flood_attempts"] = flood
    result["flood_rate_per_s"] = round(sum(flood.values()) / elapsed, 1)
    result["hashed_per_s"] = round(flood.get("wrong", 0) / elapsed, 1)
    return result


def add_user(mysql_port: int) -> None:
    conn = pymysql.connect(
        host="127.0.0.1", port=mysql_port, user="smsreg", password="smsreg", database="smsreg"
    )
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT IGNORE INTO ih_user_profile (name, password_hash, mobile) VALUES (%s, %s, %s)",
            (USER_MOBILE, argon2.PasswordHasher().hash(USER_PASSWORD), USER_MOBILE),
        )
        conn.commit()


def run_phase(name: str, env: dict[str, str], servers, args, workdir: Path) -> dict:
    redis_server, mariadb, sandbox = servers
    port = free_port()
    server_env = {
        "SMSREG_REDIS_URL": redis_server.url,
        "SMSREG_MYSQL_PORT": str(mariadb.port),
        "SMSREG_RONGLIAN_BASE_URL": sandbox.base_url,
        "SMSREG_PROVIDERS": "ronglian",
        "SMSREG_SERVER_PROCESSES": "1",
        "SMSREG_SECURITY_TRUSTED_PROXIES": "127.0.0.0/8",  # X-Forwarded-For is the client
        **env,
    }
    cmd = [sys.executable, "server.py", "--port", str(port)]
    proc = Proc(name, cmd, workdir / f"{name}.log", port=port, env=server_env).start()
    redis = sync_redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        redis.flushdb()
        add_user(mariadb.port)
        measured = measure(port, redis, args.clients, args.alone_seconds, args.flood_seconds)
        return asyncio.run(measured)
    finally:
        proc.stop()
        redis.close()


def report(results: dict) -> None:
    print(f"{'':8}{'alone p50/p99':>16}{'flood p50/p99 (request)':>26}{'logged in p50/p99':>20}")
    for name, phase in results["phases"].items():
        alone, flood = phase["alone"]["request"], phase["flood"]["request"]
        logged = phase["flood"]["logged_in"]
        print(
            f"{name:8}{alone['p50_ms']:>8.0f}/{alone['p99_ms']:<7.0f}"
            f"{flood['p50_ms']:>15.0f}/{flood['p99_ms']:<10.0f}"
            f"{logged['p50_ms']:>10.0f}/{logged['p99_ms']:<9.0f}"
        )
        print(
            f"        user: {phase['flood']['outcomes']}; flood {phase['flood_rate_per_s']}/s, "
            f"{phase['hashed_per_s']} hashed/s: {phase['flood_attempts']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--alone-seconds", type=float, default=5)
    parser.add_argument("--flood-seconds", type=float, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="login-flood-"))
    results: dict = {"clients": args.clients, "flood_seconds": args.flood_seconds, "phases": {}}
    with backing_servers("login-flood-") as servers:
        for name, env in PHASES.items():
            results["phases"][name] = run_phase(name, env, servers, args, workdir)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    report(results)
    print(f"written to {RESULTS.relative_to(ROOT)}; server logs in {workdir}")


if __name__ == "__main__":
    main()
