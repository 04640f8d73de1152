"""MySQL through an aiomysql pool: every query bounded by a timeout, dead connections dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import aiomysql
import pymysql

from services.config import MysqlConfig

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "sql" / "schema.sql"

# Client-side error numbers meaning "the connection is gone" (server restarted, network cut):
# 2003 can't connect, 2006 server has gone away, 2013 lost connection during query.
CONNECTION_LOST = {2003, 2006, 2013}


class Database:
    """A thin async facade over the pool that the repositories use."""

    def __init__(self, pool: aiomysql.Pool, query_timeout: float) -> None:
        self._pool = pool
        self._query_timeout = query_timeout

    @classmethod
    async def connect(cls, config: MysqlConfig) -> Database:
        """Open the pool (fails fast if MySQL is unreachable)."""
        pool = await asyncio.wait_for(
            aiomysql.create_pool(
                host=config.host,
                port=config.port,
                user=config.user,
                password=config.password,
                db=config.database,
                minsize=config.pool_min,
                maxsize=config.pool_max,
                connect_timeout=config.connect_timeout,
                pool_recycle=config.pool_recycle,
                charset="utf8mb4",
                autocommit=True,
            ),
            timeout=config.connect_timeout * 2,
        )
        return cls(pool, config.query_timeout)

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()

    async def fetch_one(self, sql: str, args: Sequence[object] = ()) -> tuple | None:
        """Run a read query and return its first row; retried once on a stale connection."""
        try:
            return await self._fetch_one(sql, args)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in CONNECTION_LOST:
                # After a MySQL restart the pool may still hold dead connections: drop them
                # and try once more on a fresh one. Reads are safe to repeat.
                await self._pool.clear()
                return await self._fetch_one(sql, args)
            raise

    async def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        """Run one statement (autocommit) and return the last insert id."""
        return await self._run(sql, args, lambda cur: cur.lastrowid)

    async def _fetch_one(self, sql: str, args: Sequence[object]) -> tuple | None:
        async def first_row(cur: aiomysql.Cursor) -> tuple | None:
            return await cur.fetchone()

        return await self._run(sql, args, first_row)

    async def _run(self, sql, args, result):
        async with asyncio.timeout(self._query_timeout):
            conn = await self._pool.acquire()
            try:
                async with conn.cursor() as cur:
                    await cur.execute(sql, args)
                    value = result(cur)
                    if asyncio.iscoroutine(value):
                        value = await value
                    return value
            except BaseException:
                # A connection interrupted mid-query (timeout, error) may hold unread packets:
                # never hand it to the next request.
                conn.close()
                raise
            finally:
                self._pool.release(conn)

    async def apply_schema(self, schema: str) -> None:
        """Create the tables if they are missing (every statement is idempotent)."""
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            # "Table already exists" is the expected case, not a warning worth raising.
            await cur.execute("SET SESSION sql_notes = 0")
            for statement in _statements(schema):
                await cur.execute(statement)
            await cur.execute("SET SESSION sql_notes = 1")


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
