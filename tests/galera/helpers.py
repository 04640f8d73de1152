"""Probes of the Galera nodes for the tests."""

from __future__ import annotations

import contextlib

from tests.polling import async_wait_until

# A request must be answered within this many seconds even while a node dies: one query
# timeout on the dead node, the switch (connect timeout per node tried), one more query.
ANSWER_BOUND = 10.0
# Registrations in the stream during which a node is killed (a third before the kill).
STREAM = 18
GALERA_MYSQL = {"query_timeout": 2.0, "connect_timeout": 1.0, "failback_interval": 0.5}


def mobiles_on(node) -> list[str]:
    return [row[0] for row in node.rows("SELECT mobile FROM smsreg.ih_user_profile")]


async def poll(condition, within: float, what: str) -> None:
    """Until condition() holds, yielding to the loop (the servers under test run on it)."""

    async def probe() -> bool:
        return condition()

    await async_wait_until(probe, what=what, patience=within)


def statement_arrived(node, sql_start: str) -> bool:
    """A statement beginning with `sql_start` is on the node (running or waiting)."""
    with contextlib.closing(node.admin_connection()) as conn, conn.cursor() as cur:
        # No causality wait here: the node may be held behind the cluster on purpose.
        cur.execute("SET SESSION wsrep_sync_wait = 0")
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE %s",
            (sql_start.replace("%", r"\%") + "%",),
        )
        (count,) = cur.fetchone()
        return count > 0
