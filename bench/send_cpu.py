"""CPU per SMS send, in process, for two or more checkouts side by side.

    .venv/bin/python -m bench.send_cpu --tree now=. --tree before=/path/to/other/checkout

Starts one redis-server, one MariaDB and one Ronglian sandbox (no rate limits, 0 ms), then for
each round runs every tree in turn in its own process: the services built by that tree's
server.open_services(), `--sends` calls of SmsCodeService.send_code in batches of `--batch`
concurrent ones (fresh mobiles and addresses, CAPTCHAs stored directly, every limit and
admission control out of reach, the fraud breaker on but never tripping). Reports that
process's CPU per send: no HTTP, no load generator, so what changed in the send path shows
without the noise of a full run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BIG = 10**9


def flood_config(redis_url: str, mysql_port: int, sandbox_url: str) -> Any:
    """The configuration of the tree on sys.path for a flood of sends: these servers, one
    provider, no render process, every limit, the fraud breaker and admission control out of
    reach (each still checked and counted on every send). Works on older trees too."""
    import dataclasses

    from services import config as config_module
    from services.config import load_config

    environ = {}
    admission = getattr(config_module, "AdmissionConfig", None)
    if admission is not None and "max_loop_lag" in {f.name for f in dataclasses.fields(admission)}:
        # Admission control out of reach: every send measured, none shed (on a busy machine
        # the loop lag of 50 concurrent sends would otherwise shed some and end the run).
        environ = {
            "SMSREG_ADMISSION_MAX_SENDS_IN_FLIGHT": str(BIG),
            "SMSREG_ADMISSION_MAX_LOOP_LAG": "0",
        }
    limits = ("sms_per_ip_hour", "sms_global_per_hour", "sms_per_mobile_hour")
    return load_config("config.yml", environ=environ).replace(
        captcha={"render_processes": 0, "pool_size": 0},
        redis={"url": redis_url},
        mysql={"port": mysql_port},
        ronglian={"base_url": sandbox_url},
        providers=("ronglian",),
        limits={**dict.fromkeys(limits, BIG), "sms_per_mobile_day": BIG},
        fraud={"min_sends": BIG, "budget_share_newcomer": 1.0, "budget_share_poor": 1.0},
    )


async def measure(
    redis_url: str, mysql_port: int, sandbox_url: str, sends: int, batch: int
) -> tuple[float, float]:
    """In the tree of the current directory: (CPU ms per send, sends per second)."""
    sys.path.insert(0, os.getcwd())
    from server import open_services

    try:
        from services.store import keys
    except ImportError:  # a tree from before services/store/
        from services import keys  # type: ignore[no-redef]

    config = flood_config(redis_url, mysql_port, sandbox_url)
    async with open_services(config) as services:
        await services.redis.flushdb()
        numbers = itertools.count(13_700_000_000 + time.time_ns() // 1000 % 10_000_000 * 10)

        async def send(index: int) -> None:
            captcha_id = f"cpu-{index}"
            await services.redis.set(keys.captcha_key(captcha_id), "ABCD", ex=600)
            address = f"10.{index % 250}.{index // 250 % 250}.1"
            await services.sms.send_code(str(next(numbers)), "ABCD", captcha_id, address)

        await asyncio.gather(*(send(i) for i in range(batch)))  # warm-up: pools, scripts
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(batch, batch + sends, batch):
            await asyncio.gather(*(send(i) for i in range(start, start + batch)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / sends * 1000, sends / wall


@contextlib.contextmanager
def backing_servers(prefix: str) -> Iterator[tuple[Any, Any, Any]]:
    """(redis-server, MariaDB, Ronglian sandbox without rate limits) in a fresh work
    directory, stopped on the way out."""
    from devstack.processes import MariaDBServer, RedisServer
    from tests.sandbox_helpers import SandboxProcess

    work = Path(tempfile.mkdtemp(prefix=prefix))
    redis = RedisServer(work / "redis").start()
    mariadb = MariaDBServer(work / "mariadb").start()
    sandbox = SandboxProcess(config={"rate_limits": False}, tmpdir=str(work))
    sandbox.start()
    try:
        yield redis, mariadb, sandbox
    finally:
        sandbox.stop()
        mariadb.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        redis_url, mysql_port, sandbox_url = args.child
        measured = measure(redis_url, int(mysql_port), sandbox_url, args.sends, args.batch)
        print(*asyncio.run(measured))
        return
    trees = dict(tree.split("=", 1) for tree in args.tree)
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    with backing_servers("send-cpu-") as (redis, mariadb, sandbox):
        for number in range(args.rounds):
            for name, tree in trees.items():
                # This file run by path in the tree's directory: it measures that tree's code.
                child = [sys.executable, __file__, "--tree", "x=.", "--child"]
                child += [redis.url, str(mariadb.port), sandbox.base_url]
                child += ["--sends", str(args.sends), "--batch", str(args.batch)]
                out = subprocess.run(child, cwd=tree, capture_output=True, text=True, timeout=900)
                if out.returncode:
                    raise SystemExit(f"{name}: {out.stderr[-3000:]}")
                cpu_ms, rate = map(float, out.stdout.split())
                rounds[name].append((cpu_ms, rate))
                print(f"round {number} {name}: {cpu_ms:.3f} ms CPU/send, {rate:.0f} sends/s")
                sandbox.clear()
    for name, found in rounds.items():
        cpu_ms = statistics.median(cpu for cpu, _ in found)
        rate = statistics.median(rate for _, rate in found)
        print(f"{name}: median {cpu_ms:.3f} ms CPU/send, {rate:.0f} sends/s")


if __name__ == "__main__":
    main()
