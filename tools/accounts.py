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
import contextlib
import datetime
import sys

from server import DEFAULT_CONFIG
from services.accounts.consent import Clock, utc_now
from services.accounts.deletion_purge import DeletionPurger
from services.accounts.registered import RegisteredMobiles, set_used
from services.accounts.sessions import SessionStore
from services.accounts.users import UserRepository
from services.config import ConfigError, load_config
from services.hostapp import setup as hostapp
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
    commands.add_parser(
        "forget-registered",
        help="after a hand edit of the user table's mobiles: the server's set of registered "
        "numbers is rebuilt from MySQL (docs/SECURITY.md, 'Registered numbers')",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    async with contextlib.AsyncExitStack() as stack:
        redis = redis_client(config)
        stack.push_async_callback(redis.aclose)
        db = await Database.connect(config.mysql)
        stack.push_async_callback(db.close)
        # As the server does: our tables, the host app's user table and its sessions.
        await db.apply_schema(hostapp.schema_for(config, SCHEMA_PATH.read_text(encoding="utf-8")))
        table = await hostapp.user_table(config, db)
        if args.command == "forget-registered":
            if not set_used(config):
                print("no set of registered numbers is kept here (host app or turned off)")
                return 0
            await RegisteredMobiles(redis, db, table).invalidate()
            print("the set of registered numbers will be rebuilt from MySQL")
            return 0
        sessions = SessionStore(redis, config.security.session_ttl)
        await hostapp.open_host_bridge(config, UserRepository(db, table), sessions, stack)
        purger = DeletionPurger(
            db,
            sessions,
            config.deletion,
            clock=fixed_clock(args.now) if args.now is not None else utc_now,
            table=table,
            # Numbers released here leave the server's set of registered numbers first.
            registered=RegisteredMobiles(redis, db, table) if set_used(config) else None,
        )
        report = await purger.purge()
        print(f"purged {report.completed} account(s)")
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (ConfigError, hostapp.HostTableError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
