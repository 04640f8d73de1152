"""Forward auth's cost: GET /auth/verify beside a bare Tornado handler answering 200.

    .venv/bin/python -m bench.forward_auth [--seconds 5] [--rounds 3] [--profile]

Starts redis-server, MariaDB and the sandbox (bench.send_cpu.backing_servers), then, in each
round, bench.floor's bare Tornado app on uvloop and one server.py process (server.processes 1)
per case. Each is driven over 50 keep-alive connections by bench/loadgen.py for --seconds;
what counts is the server's CPU per answered request (/proc/<pid>/stat), so that other work
on a shared machine does not count: a process can answer 1e6 / (µs per request) requests per
second. Three cases of /auth/verify: a bearer token (ES256 verify, cached per token, and one
Redis read), the same token on every request being the normal case of an app; a session
cookie (one Redis read); no credential (401, nothing read). The rounds interleave the cases,
so a busy spell of the machine weighs on all of them; the table is each case's median over
the rounds, its ratio the bare handler's median over the case's (target: at least 0.5).

--profile: then one more run of the bearer and the cookie case under py-spy (raw stacks and
a summary by category in bench/results/forward-auth-<case>.{raw,json}); the per-round
numbers go to bench/results/forward-auth.json either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import tornado.web

from bench.floor import HELLO_APP, server_cpu_per_request
from bench.profile_summary import summarize_profile
from bench.send_cpu import backing_servers
from devstack.processes import free_port, wait_for_port

RESULTS = Path(__file__).resolve().parent / "results"
BARE = "bare Tornado handler (200)"


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


def check_path(command: list[str], port: int, env: dict[str, str], name: str, header: str) -> None:
    """That the measured path is the one named: a 200 with the user."""
    probe = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, 20, probe)
        status = verify_once(f"http://127.0.0.1:{port}/auth/verify", header)
        assert status == 200, f"{name}: /auth/verify answered {status}"
    finally:
        probe.terminate()
        probe.wait()


def profile(env: dict[str, str], name: str, header: str, seconds: float) -> dict[str, object]:
    """One run of a case under py-spy: the summary by category (bench/profile_summary.py)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "server.py", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
    )
    slug = name.split()[0]
    raw = RESULTS / f"forward-auth-{slug}.raw"
    try:
        wait_for_port(port, 20, server)
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.pid)]
        spy += ["--rate", "200", "--duration", str(int(seconds)), "--format", "raw"]
        spy += ["--nonblocking", "--output", str(raw)]
        recorder = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with tempfile.TemporaryDirectory() as out:
            load = [sys.executable, "-m", "bench.loadgen", "--mode", "get"]
            load += ["--url", f"http://127.0.0.1:{port}/auth/verify", "--connections", "50"]
            load += ["--warmup", "0", "--duration", str(seconds + 1), f"--header={header}"]
            subprocess.run([*load, "--out", f"{out}/load.json"], check=True, capture_output=True)
            answered = json.loads(Path(f"{out}/load.json").read_text())["completed_per_s"]
        recorder.wait()
    finally:
        server.terminate()
        server.wait()
    summary = summarize_profile(raw, {"ok_per_s": answered})
    (RESULTS / f"forward-auth-{slug}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    with backing_servers("forward-auth-") as (redis, mariadb, sandbox):
        environ = {
            "SMSREG_SERVER_PROCESSES": "1",
            "SMSREG_LOGGING_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            "SMSREG_REDIS_URL": redis.url,
            "SMSREG_MYSQL_PORT": str(mariadb.port),
            "SMSREG_RONGLIAN_BASE_URL": sandbox.base_url,
        }
        env = {**os.environ, **environ}
        token, cookie = asyncio.run(credentials(environ))
        cases = {
            "bearer token": f"Authorization: Bearer {token}",
            "session cookie": f"Cookie: session={cookie}",
            "no credential (401)": "",
        }
        for name, header in cases.items():
            if header:
                port = free_port()
                check_path(
                    [sys.executable, "server.py", "--port", str(port)], port, env, name, header
                )
        rounds: dict[str, list[float]] = {BARE: [], **{name: [] for name in cases}}
        for number in range(args.rounds):
            port = free_port()
            hello = [sys.executable, "-c", HELLO_APP, str(port)]
            rounds[BARE].append(server_cpu_per_request(hello, port, "/x/y", args.seconds))
            for name, header in cases.items():
                port = free_port()
                rounds[name].append(
                    server_cpu_per_request(
                        [sys.executable, "server.py", "--port", str(port)],
                        port,
                        "/auth/verify",
                        args.seconds,
                        (header,) if header else (),
                        env=env,
                        stdout=subprocess.DEVNULL,
                    )
                )
            each = "  ".join(f"{micros[-1]:.0f}" for micros in rounds.values())
            print(f"round {number + 1}: µs CPU/request (bare, bearer, cookie, 401): {each}")
        profiles = {
            name: profile(env, name, header, args.seconds)
            for name, header in cases.items()
            if header and args.profile
        }
    medians = {name: statistics.median(micros) for name, micros in rounds.items()}
    bare = medians[BARE]
    (RESULTS / "forward-auth.json").write_text(
        json.dumps({"seconds": args.seconds, "rounds": rounds, "medians": medians}, indent=2) + "\n"
    )
    print(f"{BARE:32s} {bare:6.0f} µs CPU/request  {1e6 / bare:7.0f} req/s")
    for name in cases:
        micros = medians[name]
        print(
            f"{'/auth/verify, ' + name:32s} {micros:6.0f} µs CPU/request  {1e6 / micros:7.0f} "
            f"req/s  ratio {bare / micros:.2f}"
        )
    for name, summary in profiles.items():
        print(f"\n/auth/verify, {name}: where the server's time goes (py-spy)")
        for row in summary["categories"]:  # type: ignore[attr-defined]
            print(f"  {row['pct']:5.1f} %  {row['category']}")


if __name__ == "__main__":
    main()
