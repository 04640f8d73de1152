"""Operator command for the fraud segments: list them by state, unblock one.

    python -m tools.fraud [--config config.yml] list [--state elevated|blocked]
    python -m tools.fraud [--config config.yml] unblock blk:1381234

Talks to the Redis of the configuration (standalone or cluster, SMSREG_* overrides apply).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from server import DEFAULT_CONFIG
from services.captcha.pow import ProofOfWork
from services.codes.fraud import FraudGuard
from services.config import ConfigError, load_config
from services.metrics import Metrics
from services.store.redisclient import redis_client


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fraud", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="segments that are elevated or blocked")
    listing.add_argument("--state", choices=("elevated", "blocked"))
    unblock = commands.add_parser("unblock", help="put one segment back to normal")
    unblock.add_argument("segment", help="e.g. blk:1381234, net:203.0.113.0/24, ip:203.0.113.7")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    redis = redis_client(config)
    try:
        guard = FraudGuard(
            redis,
            config.fraud,
            pow_service=ProofOfWork(redis, config.fraud, config.security.code_hmac_key),
            metrics=Metrics(),
        )
        if args.command == "unblock":
            if await guard.unblock(args.segment):
                print(f"{args.segment}: normal")
                return 0
            print(f"{args.segment}: no such segment in the window", file=sys.stderr)
            return 1
        now_ms = int(time.time() * 1000)
        rows = await guard.segments(args.state)
        header = f"{'segment':<32} {'state':<9} {'level':>5} {'sends':>6} {'conv':>6}"
        print(f"{header} {'since':>8} {'left':>7}")
        for row in rows:
            since = f"{(now_ms - row.since_ms) // 1000}s" if row.since_ms else "-"
            left = f"{max(0, row.until_ms - now_ms) // 1000}s" if row.state == "blocked" else "-"
            print(
                f"{row.name:<32} {row.state:<9} {row.level:>5} {row.sends:>6} {row.conversions:>6}"
                f" {since:>8} {left:>7}"
            )
        print(f"{len(rows)} segment(s)")
        return 0
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
