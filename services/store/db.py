"""MySQL through an aiomysql pool: one server, or the nodes of a MariaDB Galera cluster.

Every query is bounded by a timeout and dead connections are dropped. With several nodes
(`mysql.hosts`) each server instance writes to its preferred node (the first one) and fails
over to the next usable one when a node cannot be reached or is not a synced member of the
primary component; it returns to the preferred node once that node is usable again.

Galera's certification conflicts (error 1213), lost connections and refusing nodes are
services/store/db_conflicts.py: every write here goes through its `retry_on_conflict`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiomysql
import pymysql

from services.config import MysqlConfig
from services.store.db_conflicts import (
    CONNECTION_LOST,
    NODE_REFUSED,
    OUTCOME_UNKNOWN,
    DatabaseStats,
    NoUsableNode,
    WriteOutcomeUnknown,
    error_number,
    retry_on_conflict,
)

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "sql" / "schema.sql"
T = TypeVar("T")
# wsrep_local_state 4 = Synced: the node holds every committed transaction of the cluster.
WSREP_SYNCED = "4"
# One result row: column types are what the SELECT asks for, decoded by the driver.
Row = tuple[Any, ...]
# Causality checks (wsrep_sync_wait bits): before a read (1: SELECT, BEGIN), an UPDATE or
# DELETE (2) and an INSERT (4) the node applies every transaction committed anywhere in the
# cluster before the statement arrived. Reads alone are not enough: an UPDATE through a node
# that has not yet applied another node's INSERT matches no row and silently changes nothing.
WSREP_SYNC_WAIT = 1 | 2 | 4


class Database:
    """A thin async facade over the pool that the repositories use.

    Writes: `execute` (one autocommit statement) and `transaction` (several statements in one
    transaction) both retry certification conflicts. Reads: `fetch_one`.
    """

    def __init__(self, config: MysqlConfig, on_event: Callable[[str], None] | None = None) -> None:
        self._config = config
        self._nodes = config.nodes()
        self._pool: aiomysql.Pool | None = None
        self._node = 0  # index in _nodes of the node the pool talks to
        self._switch_lock = asyncio.Lock()
        self._failback: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.stats = DatabaseStats(on_event=on_event)

    @classmethod
    async def connect(
        cls, config: MysqlConfig, on_event: Callable[[str], None] | None = None
    ) -> Database:
        """Open the pool on the first usable node (fails fast if none is reachable).

        `on_event` is called with "conflicts", "conflict_retries" or "failovers".
        """
        db = cls(config, on_event)
        db._pool, db._node = await db._open_first_usable(0)
        db._watch_preferred()
        return db

    @property
    def node(self) -> str:
        """host:port of the node this process uses now."""
        host, port = self._nodes[self._node]
        return f"{host}:{port}"

    async def close(self) -> None:
        if self._failback is not None:
            self._failback.cancel()
        # What is left are pools being closed after a switch: they close once released.
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()

    # --- queries ---------------------------------------------------------------------------

    async def fetch_one(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        """Run a read query and return its first row (reads are repeated on another node)."""

        async def first_row(cur: aiomysql.Cursor) -> Row | None:
            await cur.execute(sql, args)
            row: Row | None = await cur.fetchone()
            return row

        return await self._on_a_node(first_row, repeatable=True)

    async def fetch_all(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        """Run a read query and return all its rows (reads are repeated on another node)."""

        async def all_rows(cur: aiomysql.Cursor) -> list[Row]:
            await cur.execute(sql, args)
            return list(await cur.fetchall())

        return await self._on_a_node(all_rows, repeatable=True)

    async def execute(
        self, sql: str, args: Sequence[object] = (), *, idempotent: bool = False
    ) -> int:
        """Run one statement (autocommit) and return the last insert id.

        Retried on certification conflicts. If the connection breaks while the statement is
        on the server, an `idempotent` statement (same effect if applied twice, e.g. an UPDATE
        setting a value) is run again on the next node; any other raises WriteOutcomeUnknown.
        """

        async def run(cur: aiomysql.Cursor) -> int:
            await cur.execute(sql, args)
            last_id: int = cur.lastrowid
            return last_id

        return await retry_on_conflict(
            lambda: self._on_a_node(run, repeatable=idempotent),
            self._config.conflict_retries,
            self.stats,
        )

    async def transaction(
        self, work: Callable[[aiomysql.Cursor], Awaitable[T]], *, idempotent: bool = False
    ) -> T:
        """Run `work(cursor)` inside BEGIN … COMMIT, the whole of it again on a conflict.

        `work` must only touch the database through the cursor (it may run several times).
        A conflict may surface at any statement or at COMMIT; either way all of it was rolled
        back. `idempotent` as for `execute`.
        """

        async def run(cur: aiomysql.Cursor) -> T:
            # On any failure _on_a_node closes the connection, and the server rolls back
            # what it left open.
            await cur.execute("BEGIN")
            result = await work(cur)
            await cur.execute("COMMIT")
            return result

        return await retry_on_conflict(
            lambda: self._on_a_node(run, repeatable=idempotent),
            self._config.conflict_retries,
            self.stats,
        )

    async def apply_schema(self, schema: str) -> None:
        """Create the tables if they are missing (every statement is idempotent)."""

        async def create(cur: aiomysql.Cursor) -> None:
            # "Table already exists" is the expected case, not a warning worth raising.
            await cur.execute("SET SESSION sql_notes = 0")
            try:
                for statement in _statements(schema):
                    await cur.execute(statement)
            finally:
                await cur.execute("SET SESSION sql_notes = 1")

        await self._on_a_node(create, repeatable=True, time_limit=self._config.connect_timeout * 5)

    # --- one attempt per node ----------------------------------------------------------------

    async def _on_a_node(
        self,
        work: Callable[[aiomysql.Cursor], Awaitable[T]],
        *,
        repeatable: bool,
        time_limit: float | None = None,
    ) -> T:
        """Run `work` on the current node; if that node is gone, on the next usable one.

        Each attempt (waiting for a pooled connection and the queries) is bounded by
        `query_timeout`; opening another node by `connect_timeout` per node tried.
        """
        for _ in range(len(self._nodes) + 1):
            pool = self._pool
            assert pool is not None
            sent = False
            try:
                async with asyncio.timeout(time_limit or self._config.query_timeout):
                    conn = await pool.acquire()
                    try:
                        async with conn.cursor() as cur:
                            sent = True
                            return await work(cur)
                    except BaseException:
                        # A connection interrupted mid-query (timeout, error) may hold unread
                        # packets: never hand it to the next request.
                        conn.close()
                        raise
                    finally:
                        pool.release(conn)
            except RuntimeError:
                if pool is self._pool:
                    raise
                continue  # the pool was closed by a switch to another node: use the new one
            except pymysql.err.MySQLError as exc:
                number = error_number(exc)
                if number not in CONNECTION_LOST and number not in NODE_REFUSED:
                    raise
                await self._fail_over(pool, exc)
                if sent and number in OUTCOME_UNKNOWN and not repeatable:
                    raise WriteOutcomeUnknown(
                        number, f"connection lost during a write: {exc}"
                    ) from exc
        raise NoUsableNode(2003, "MySQL nodes keep failing")

    async def _fail_over(self, failed: aiomysql.Pool, exc: BaseException) -> None:
        """Replace the pool `failed` by one on the next usable node (once per failure)."""
        async with self._switch_lock:
            if self._pool is None or failed is not self._pool:
                return  # another request already switched
            old_node = self.node
            if len(self._nodes) == 1:
                # One server: drop the dead connections, reconnect on the next acquire.
                await failed.clear()
                return
            pool, index = await self._open_first_usable(self._node + 1)
            self._swap(pool, index)
            log.warning("mysql node %s failed (%s): now using %s", old_node, exc, self.node)

    async def _fail_back(self) -> None:
        """Away from the preferred node, try it every `failback_interval` seconds until it
        is usable again, then move back to it (requests in flight finish on the old pool)."""
        while self._node != 0:
            await asyncio.sleep(self._config.failback_interval)
            try:
                pool = await self._open_node(0)
            except (pymysql.err.MySQLError, OSError, TimeoutError):
                continue  # still down or not synced: stay where we are
            async with self._switch_lock:
                if self._node == 0:
                    self._in_background(_close_pool(pool))
                    return
                self._swap(pool, 0)
            log.warning("mysql preferred node %s usable again: back on it", self.node)

    def _swap(self, pool: aiomysql.Pool, index: int) -> None:
        old = self._pool
        self._pool, self._node = pool, index
        self.stats.add("failovers")
        if old is not None:
            # Requests still holding its connections finish; then it closes.
            self._in_background(_close_pool(old))
        self._watch_preferred()

    def _watch_preferred(self) -> None:
        if self._node != 0 and (self._failback is None or self._failback.done()):
            self._failback = self._in_background(self._fail_back())

    def _in_background(self, coro: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _open_first_usable(self, start: int) -> tuple[aiomysql.Pool, int]:
        """A pool on the first usable node from `start` on (wrapping around the list)."""
        problems = []
        for offset in range(len(self._nodes)):
            index = (start + offset) % len(self._nodes)
            try:
                return await self._open_node(index), index
            except (pymysql.err.MySQLError, OSError, TimeoutError) as exc:
                host, port = self._nodes[index]
                problems.append(f"{host}:{port}: {exc}")
        if len(self._nodes) == 1:
            raise pymysql.err.OperationalError(2003, problems[0])
        raise NoUsableNode(2003, "no usable MySQL node: " + "; ".join(problems))

    async def _open_node(self, index: int) -> aiomysql.Pool:
        """Check the node over one connection, then open the pool on it."""
        host, port = self._nodes[index]
        options = {
            "host": host,
            "port": port,
            "user": self._config.user,
            "password": self._config.password,
            "db": self._config.database,
            "connect_timeout": self._config.connect_timeout,
            "charset": "utf8mb4",
            "autocommit": True,
        }
        async with asyncio.timeout(self._config.connect_timeout * 2):
            probe = await aiomysql.connect(**options)
            try:
                galera = await _check_node(probe, f"{host}:{port}")
            finally:
                probe.close()
            if galera:
                # Causality: a user registered through one node can log in, change the
                # password or the mobile through another right away.
                options["init_command"] = f"SET SESSION wsrep_sync_wait = {WSREP_SYNC_WAIT}"
            return await aiomysql.create_pool(
                minsize=self._config.pool_min,
                maxsize=self._config.pool_max,
                pool_recycle=self._config.pool_recycle,
                **options,
            )


async def _check_node(conn: aiomysql.Connection, name: str) -> bool:
    """True for a Galera node ready for writes, False for a plain server; else raise."""
    async with conn.cursor() as cur:
        await cur.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
        row = await cur.fetchone()
        if row is None or str(row[1]).upper() != "ON":
            return False
        await cur.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('wsrep_ready', 'wsrep_local_state', 'wsrep_cluster_status')"
        )
        status = dict(await cur.fetchall())
    if (
        status.get("wsrep_ready") != "ON"
        or status.get("wsrep_cluster_status") != "Primary"
        or status.get("wsrep_local_state") != WSREP_SYNCED
    ):
        raise pymysql.err.OperationalError(1047, f"galera node {name} not usable: {status}")
    return True


async def _close_pool(pool: aiomysql.Pool) -> None:
    pool.close()
    await pool.wait_closed()


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
