"""Garbage-collector pauses during an SMS flood, with and without
services.processes.settle_garbage_collector.

    .venv/bin/python -m bench.gc_pauses [--rounds 3] [--sends 6000]

Starts one redis-server, one MariaDB and one Ronglian sandbox (0 ms, no rate limits), then in
each round runs two fresh processes in turn, each as server.serve() prepares a worker: the
services of open_services(), then either Python's default collector or the settled one, then
`--sends` send_code calls, 50 in flight at a time (every limit out of reach). Each reports its
CPU per send and every collection by generation (count, total and longest pause): a pause
stops the event loop, and every request in flight waits it out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import itertools
import json
import subprocess
import sys
import time

import uvloop

from bench.send_cpu import backing_servers, flood_config

MODES = ("default", "settled")


async def flood(urls: list[str], mode: str, sends: int) -> dict[str, object]:
    from server import open_services
    from services import keys
    from services.processes import settle_garbage_collector

    redis_url, mysql_port, sandbox_url = urls
    config = flood_config(redis_url, int(mysql_port), sandbox_url)
    pauses: dict[int, list[float]] = collections.defaultdict(list)
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    async with open_services(config) as services:
        await services.redis.flushdb()
        numbers = itertools.count(13_700_000_000 + time.time_ns() // 1000 % 10_000_000 * 10)

        async def send(i: int) -> None:
            await services.redis.set(keys.captcha_key(f"gc-{i}"), "ABCD", ex=600)
            address = f"10.{i % 250}.{i // 250 % 250}.1"
            await services.sms.send_code(str(next(numbers)), "ABCD", f"gc-{i}", address)

        if mode == "settled":
            settle_garbage_collector()
        gc.callbacks.append(timed)
        cpu = time.process_time()
        for first in range(0, sends, 50):
            await asyncio.gather(*(send(i) for i in range(first, first + 50)))
        cpu_us = (time.process_time() - cpu) / sends * 1e6
        gc.callbacks.remove(timed)
    return {
        "cpu_us_per_send": round(cpu_us),
        "generations": {
            gen: {
                "collections": len(found),
                "total_ms": round(sum(found) * 1000, 1),
                "longest_ms": round(max(found) * 1000, 2),
            }
            for gen, found in sorted(pauses.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sends", type=int, default=6000)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *urls = args.child
        print(json.dumps(uvloop.run(flood(urls, mode, args.sends))))
        return
    with backing_servers("gc-pauses-") as (redis, mariadb, sandbox):
        for number in range(args.rounds):
            for mode in MODES:
                child = [sys.executable, "-m", "bench.gc_pauses", "--sends", str(args.sends)]
                child += ["--child", mode, redis.url, str(mariadb.port), sandbox.base_url]
                out = subprocess.run(child, capture_output=True, text=True, timeout=900)
                if out.returncode:
                    raise SystemExit(out.stderr[-3000:])
                print(f"round {number} {mode}: {out.stdout.strip()}")
                sandbox.clear()


if __name__ == "__main__":
    main()
