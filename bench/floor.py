"""What each part of the stack costs per call: the floor under CPU per SMS send.

    .venv/bin/python -m bench.floor [--calls 4000] [--rounds 3]

Starts one redis-server, one MariaDB and one Ronglian sandbox (0 ms, no rate limits), then, in
one process on uvloop with the services server.open_services() builds, measures the CPU per
call of each building block a send uses, `--batch` calls in flight at a time (as under load):
a Redis command, one Lua script, three scripts in one pipeline, the aiomysql SELECT for
"already registered?", one TemplateSMS through the curl client, and a whole send_code. In a
separate process it measures the cost of Tornado's own request path: a handler that answers a
constant, and our server.py answering a JSON 404, both driven over keep-alive connections by
bench/loadgen.py. The naive peer (c+) is the
sum of its parts; docs/PERFORMANCE.md does the arithmetic.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from bench.send_cpu import BIG, backing_servers, flood_config
from devstack.processes import free_port, wait_for_port

HELLO_APP = """
import sys, asyncio, uvloop, tornado.web
class Hello(tornado.web.RequestHandler):
    def get(self, *args):
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(b'{"errno":"0","errmsg":"ok"}')
async def main():
    tornado.web.Application([(r"/(.*)", Hello)]).listen(
        int(sys.argv[1]), "127.0.0.1")
    await asyncio.Event().wait()
uvloop.run(main())
"""


async def per_call(call: Callable[[int], Awaitable[object]], calls: int, batch: int) -> float:
    """CPU µs per call, `batch` calls in flight at a time."""
    await asyncio.gather(*(call(i) for i in range(batch)))  # warm-up: pools, scripts
    cpu = time.process_time()
    for start in range(batch, batch + calls, batch):
        await asyncio.gather(*(call(i) for i in range(start, start + batch)))
    return (time.process_time() - cpu) / calls * 1e6


async def measure_parts(
    redis_url: str, mysql_port: int, sandbox_url: str, calls: int, batch: int
) -> dict[str, float]:
    from server import open_services
    from services.providers.base import CodeMessage
    from services.store import keys
    from services.store.limits import Limit, RateLimiter
    from services.store.redis_scripts import run_together

    config = flood_config(redis_url, mysql_port, sandbox_url)
    async with open_services(config) as services:
        redis, limiter = services.redis, RateLimiter(services.redis)
        await redis.flushdb()
        numbers = itertools.count(13_700_000_000 + time.time_ns() // 1000 % 10_000_000 * 10)

        def limit(i: int, tag: str) -> Limit:
            return Limit(f"floor:{{{tag}{i % 97}}}", BIG, 3600, "floor", "{seconds}")

        async def send(i: int) -> None:
            await redis.set(keys.captcha_key(f"floor-{i}"), "ABCD", ex=600)
            mobile, address = str(next(numbers)), f"10.{i % 250}.{i // 250 % 250}.1"
            await services.sms.send_code(mobile, "ABCD", f"floor-{i}", address)

        parts: dict[str, Callable[[int], Awaitable[object]]] = {
            "redis_get": lambda i: redis.get(f"floor:{i}"),
            "one_script": lambda i: limiter.take(limit(i, "a")),
            "three_scripts_one_pipeline": lambda i: run_together(
                redis, [limiter.take_call(limit(i, tag)) for tag in "abc"]
            ),
            "mysql_select": lambda i: services.users.mobile_exists(str(next(numbers))),
            "provider_send": lambda i: services.sender.send(
                CodeMessage(str(next(numbers)), "123456", 5)
            ),
            "send_code (seeded CAPTCHA SET included)": send,
        }
        return {name: await per_call(call, calls, batch) for name, call in parts.items()}


def server_cpu_per_request(
    command: list[str],
    port: int,
    path: str,
    seconds: float,
    headers: tuple[str, ...] = (),
    **popen: Any,
) -> float:
    """CPU µs per request of the HTTP server `command` (listening on `port`) for GET `path`
    (with `headers`, 'Name: value'), under 50 keep-alive connections (bench/loadgen.py)."""
    server = subprocess.Popen(command, **popen)
    try:
        wait_for_port(port, 20, server)
        ticks = Path(f"/proc/{server.pid}/stat")
        before = sum(map(int, ticks.read_text().split()[13:15]))
        with tempfile.TemporaryDirectory() as out:
            url = f"http://127.0.0.1:{port}{path}"
            load = [sys.executable, "-m", "bench.loadgen", "--mode", "get", "--url", url]
            load += ["--connections", "50", "--warmup", "0", "--duration", str(seconds)]
            load += [f"--header={header}" for header in headers]
            subprocess.run([*load, "--out", f"{out}/load.json"], check=True, capture_output=True)
            answered = json.loads(Path(f"{out}/load.json").read_text())["completed_per_s"] * seconds
        after = sum(map(int, ticks.read_text().split()[13:15]))
    finally:
        server.terminate()
        server.wait()
    return (after - before) / 100 / answered * 1e6  # clock ticks are 1/100 s


def measure_http(redis_url: str, mysql_port: int, sandbox_url: str) -> dict[str, float]:
    """A bare Tornado handler on uvloop, and our server's JSON 404 (the loop-lag probe's)."""
    port = free_port()
    bare = server_cpu_per_request([sys.executable, "-c", HELLO_APP, str(port)], port, "/x/y", 5)
    port = free_port()
    env = {
        **os.environ,
        "SMSREG_SERVER_PROCESSES": "1",
        "SMSREG_REDIS_URL": redis_url,
        "SMSREG_MYSQL_PORT": str(mysql_port),
        "SMSREG_RONGLIAN_BASE_URL": sandbox_url,
    }
    command = [sys.executable, "server.py", "--port", str(port)]
    ours = server_cpu_per_request(
        command, port, "/api/v1.0/nothing", 5, env=env, stdout=subprocess.DEVNULL
    )
    return {"tornado_request (bare handler)": bare, "our_request (a JSON 404)": ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        redis_url, mysql_port, sandbox_url = args.child
        parts = measure_parts(redis_url, int(mysql_port), sandbox_url, args.calls, args.batch)
        print(json.dumps(uvloop.run(parts)))
        return
    rounds: dict[str, list[float]] = {}
    with backing_servers("floor-") as (redis, mariadb, sandbox):
        for _ in range(args.rounds):
            child = [sys.executable, "-m", "bench.floor", "--child"]
            child += [redis.url, str(mariadb.port), sandbox.base_url]
            child += ["--calls", str(args.calls), "--batch", str(args.batch)]
            out = subprocess.run(child, capture_output=True, text=True, timeout=900)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            for name, micros in json.loads(out.stdout).items():
                rounds.setdefault(name, []).append(micros)
            for name, micros in measure_http(redis.url, mariadb.port, sandbox.base_url).items():
                rounds.setdefault(name, []).append(micros)
            sandbox.clear()
    for name, found in rounds.items():
        print(f"{name:45s} median {statistics.median(found):7.0f} µs CPU per call  {found}")


if __name__ == "__main__":
    main()
