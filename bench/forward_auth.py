"""Forward auth's cost: GET /auth/verify beside a bare Tornado handler answering 200.

    .venv/bin/python -m bench.forward_auth [--seconds 5]

Starts redis-server, MariaDB and the sandbox (bench.send_cpu.backing_servers), one server.py
process (server.processes 1) and, in turn, bench.floor's bare Tornado app on uvloop. Each is
driven over 50 keep-alive connections by bench/loadgen.py for --seconds; what counts is the
server's CPU per answered request (/proc/<pid>/stat), so that other work on a shared machine
does not count: a process can answer 1e6 / (µs per request) requests per second. Three
cases of /auth/verify: a bearer token (ES256 verify, cached per token, and one Redis read),
the same token on every request being the normal case of an app; a session cookie (one
Redis read); no credential (401, nothing read). Prints each and the ratio to the bare handler
(target: at least 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import urllib.request

import tornado.web

from bench.floor import HELLO_APP, server_cpu_per_request
from bench.send_cpu import backing_servers
from devstack.processes import free_port, wait_for_port


async def credentials(environ: dict[str, str]) -> tuple[str, str]:
    """(an access token, a signed session cookie) of a new user, made as the server would."""
    from server import open_services
    from services.config import load_config

    config = load_config("config.yml", environ=environ)
    async with open_services(config) as services:
        user = await services.users.create("bench-user", "13700009999", "x")
        pair = await services.tokens.issue(user)
        session_id = await services.sessions.create(user)
        cookie = tornado.web.create_signed_value(
            config.security.cookie_secret, "session", session_id
        ).decode()
    return pair.access_token, cookie


def verify_once(url: str, header: str) -> int:
    name, _, value = header.partition(": ")
    request = urllib.request.Request(url, headers={name: value} if header else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.headers["X-User-Id"], "no X-User-Id"
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    with backing_servers("forward-auth-") as (redis, mariadb, sandbox):
        environ = {
            "SMSREG_SERVER_PROCESSES": "1",
            "SMSREG_LOGGING_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            "SMSREG_REDIS_URL": redis.url,
            "SMSREG_MYSQL_PORT": str(mariadb.port),
            "SMSREG_RONGLIAN_BASE_URL": sandbox.base_url,
        }
        token, cookie = asyncio.run(credentials(environ))
        port = free_port()
        hello = [sys.executable, "-c", HELLO_APP, str(port)]
        bare = server_cpu_per_request(hello, port, "/x/y", args.seconds)
        cases = {
            "bearer token": f"Authorization: Bearer {token}",
            "session cookie": f"Cookie: session={cookie}",
            "no credential (401)": "",
        }
        results = {}
        for name, header in cases.items():
            port = free_port()
            command = [sys.executable, "server.py", "--port", str(port)]
            env = {**os.environ, **environ}
            if header:  # check that the measured path is the one named: a 200 with the user
                probe = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
                try:
                    wait_for_port(port, 20, probe)
                    status = verify_once(f"http://127.0.0.1:{port}/auth/verify", header)
                    assert status == 200, f"{name}: /auth/verify answered {status}"
                finally:
                    probe.terminate()
                    probe.wait()
                port = free_port()
                command = [sys.executable, "server.py", "--port", str(port)]
            headers = (header,) if header else ()
            results[name] = server_cpu_per_request(
                command,
                port,
                "/auth/verify",
                args.seconds,
                headers,
                env=env,
                stdout=subprocess.DEVNULL,
            )
    print(f"{'bare Tornado handler (200)':32s} {bare:6.0f} µs CPU/request  {1e6 / bare:7.0f} req/s")
    for name, micros in results.items():
        print(
            f"{'/auth/verify, ' + name:32s} {micros:6.0f} µs CPU/request  {1e6 / micros:7.0f} "
            f"req/s  ratio {bare / micros:.2f}"
        )


if __name__ == "__main__":
    main()
