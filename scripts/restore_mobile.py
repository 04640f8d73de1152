"""Move a hijacked account back to its owner's mobile and end every session of it.

Support runs this once it has verified the person (docs/OPERATIONS.md, "Restoring a hijacked
account's mobile"), with the server's config:

    .venv/bin/python -m scripts.restore_mobile [--config FILE] --user-id 42 --mobile 13812345678

Exit code 0 when restored (or already on that number: the sessions are ended again), 1 when
refused and nothing changed (no such user, not a mainland mobile, another account holds the
number), 2 on a usage, config or connection problem.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import pymysql
import redis.exceptions

from services.accounts.mobiles import canonical_mobile, mask_mobile
from services.accounts.registered import RegisteredMobiles, set_used
from services.accounts.sessions import SessionStore
from services.accounts.users import UserRepository
from services.config import Config, ConfigError, load_config
from services.errors import ServiceError
from services.hostapp.tables import IHOME
from services.store.db import Database
from services.store.redisclient import redis_client


async def restore(config: Config, user_id: int, mobile: str) -> tuple[int, str]:
    """(exit code, the line to print): the mobile moved back, then every session ended."""
    redis = redis_client(config)
    try:
        db = await Database.connect(config.mysql)
        try:
            # As the server: the numbers moved write through to its set of registered ones.
            registered = RegisteredMobiles(redis, db, IHOME) if set_used(config) else None
            users = UserRepository(db, IHOME, registered)
            user = await users.by_id(user_id)
            if user is None:
                return 1, f"no user {user_id}: nothing changed"
            if user.mobile != mobile:
                try:
                    await users.move_to_mobile(user, mobile)
                except ServiceError as refused:
                    return 1, f"not restored ({refused.errmsg}): nothing changed"
            ended = await SessionStore(redis, config.security.session_ttl).end_all(user_id)
        finally:
            await db.close()
    finally:
        await redis.aclose()
    return 0, f"restored user {user_id} to {mask_mobile(mobile)}, ended {ended} sessions"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yml", help="the server's YAML config")
    parser.add_argument("--user-id", type=int, required=True)
    parser.add_argument("--mobile", required=True, help="the owner's number, to move back to")
    args = parser.parse_args(argv)
    mobile = canonical_mobile(args.mobile)
    if mobile is None:
        print("restore_mobile: not a mainland mobile: nothing changed", file=sys.stderr)
        return 1
    try:
        code, line = asyncio.run(restore(load_config(args.config), args.user_id, mobile))
    except (
        ConfigError,
        ServiceError,
        OSError,
        pymysql.err.Error,
        redis.exceptions.RedisError,
    ) as exc:
        print(f"restore_mobile: {exc}", file=sys.stderr)
        return 2
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
