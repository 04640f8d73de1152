"""Building the host app bridge from the configuration (server.py and the tools call this)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.accounts.sessions import SessionStore
from services.accounts.users import UserRepository
from services.config import Config
from services.errors import STORAGE_ERRORS
from services.hostapp.bridge import HostBridge
from services.hostapp.django_host import DjangoHost
from services.hostapp.flask_host import FlaskHost
from services.hostapp.framework import HostFramework
from services.hostapp.tables import TABLES, HostTableError, UserTable, fitted_table
from services.store.db import Database

OUR_USER_TABLE = "ih_user_profile"


def schema_for(config: Config, schema: str) -> str:
    """sql/schema.sql for this host app: with meiduo's or news's own user table, ours is
    not created beside it."""
    if config.host_app.kind in ("standalone", "ihome"):
        return schema
    statements = schema.split(";")
    return ";".join(s for s in statements if f"TABLE IF NOT EXISTS {OUR_USER_TABLE} " not in s)


async def user_table(config: Config, db: Database) -> UserTable:
    """The user table the flows use, checked against the database (HostTableError)."""
    table = TABLES[config.host_app.kind]
    if config.host_app.standalone:
        return table  # ours, created by sql/schema.sql
    return await fitted_table(db, table)


@dataclass(frozen=True)
class StartupProblem:
    line: str
    exit_code: int


async def table_problem(config: Config) -> StartupProblem | None:
    """Start-up's check of the host's user table, before any worker starts: a wrong table is
    a configuration error (exit 2), an unreachable database a start-up failure (exit 1)."""
    if config.host_app.standalone:
        return None
    try:
        db = await Database.connect(config.mysql)
        try:
            await user_table(config, db)
        finally:
            await db.close()
    except HostTableError as exc:
        return StartupProblem(f"config error: host_app: {exc}", 2)
    except STORAGE_ERRORS as exc:
        return StartupProblem(f"startup failed: {exc}", 1)
    return None


async def open_host_bridge(
    config: Config,
    users: UserRepository,
    sessions: SessionStore,
    stack: contextlib.AsyncExitStack,
) -> HostBridge | None:
    """The bridge to the host app's sessions (None when standalone), its Redis closed on exit."""
    host = config.host_app
    if host.standalone:
        return None
    redis = aioredis.Redis.from_url(
        host.redis_url,
        socket_timeout=config.redis.socket_timeout,
        socket_connect_timeout=config.redis.connect_timeout,
    )
    stack.push_async_callback(redis.aclose)
    framework: HostFramework = (
        DjangoHost(redis, host, users) if host.kind == "meiduo" else FlaskHost(redis, host)
    )
    return HostBridge(framework, sessions)


__all__ = ["HostTableError", "open_host_bridge", "schema_for", "table_problem", "user_table"]
