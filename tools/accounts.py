"""Operator command for accounts: complete the deletions (注销) whose cooling-off is over.

    python -m tools.accounts [--config config.yml] purge [--now 2026-02-01T03:00:00]

Cron-friendly: prints one line ("purged N account(s)"), exit 0; idempotent, and safe to run
on several hosts at once (each deletion is claimed by one run: services/accounts/
deletion_purge.py). `--now` (UTC) stands in for the clock, for tests and for a dry look at a
later date. Talks to the MySQL and Redis of the configuration (SMSREG_* overrides apply).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys

from server import DEFAULT_CONFIG
from services.accounts.consent import Clock, utc_now
from services.accounts.deletion_purge import DeletionPurger
from services.accounts.sessions import SessionStore
from services.config import ConfigError, load_config
from services.store.db import SCHEMA_PATH, Database
from services.store.redisclient import redis_client


def utc_time(text: str) -> datetime.datetime:
    """An ISO 8601 time: naive is UTC, an offset is converted to UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment


def fixed_clock(moment: datetime.datetime) -> Clock:
    return lambda: moment


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.accounts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    commands = parser.add_subparsers(dest="command", required=True)
    purge = commands.add_parser("purge", help="complete the deletions that are due")
    purge.add_argument("--now", type=utc_time, help="the time to purge at (UTC), default now")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    redis = redis_client(config)
    db = await Database.connect(config.mysql)
    try:
        await db.apply_schema(SCHEMA_PATH.read_text(encoding="utf-8"))  # as the server does
        purger = DeletionPurger(
            db,
            SessionStore(redis, config.security.session_ttl),
            config.deletion,
            clock=fixed_clock(args.now) if args.now is not None else utc_now,
        )
        report = await purger.purge()
        print(f"purged {report.completed} account(s)")
        return 0
    finally:
        await db.close()
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
