"""What a MySQL cluster does to a query, and how a write survives it: lost connections,
refusing nodes, and Galera's certification conflicts (error 1213), retried bounded.

Galera adds one failure every write must expect: two nodes commit conflicting transactions at
the same moment, and the later one fails certification with error 1213 (reported as a
deadlock, although nothing waited on a lock). The transaction was rolled back as a whole, so
running it again is safe: `retry_on_conflict` does that, bounded, for every write.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pymysql

T = TypeVar("T")

# Client-side error numbers meaning "the connection is gone" (server restarted, network cut):
# 2003 can't connect, 2006 server has gone away, 2013 lost connection during query.
CONNECTION_LOST = {2003, 2006, 2013}
# Errors after which a statement may have been applied or not: the connection broke while
# the server had it. A write that meets one is not repeated blindly (WriteOutcomeUnknown).
OUTCOME_UNKNOWN = {2006, 2013}
# The server answered but cannot serve: 1047 "WSREP has not yet prepared node for application
# use" (a Galera node outside the primary component, or still joining), 1053 shutting down,
# 1927 connection killed. The statement was refused, so it is safe to run it elsewhere.
NODE_REFUSED = {1047, 1053, 1927}
# A deadlock, or a Galera certification failure at commit: the transaction was rolled back.
CONFLICT = 1213
# Pauses between conflict retries: a random part so that the losers of one race do not meet
# again in lockstep (seconds, multiplied by the attempt number).
CONFLICT_PAUSE = 0.005


class WriteOutcomeUnknown(pymysql.err.OperationalError):
    """The connection broke after a write was sent: it may or may not have been committed.

    Still a storage error (clients get DBERR); callers that can tell their own write apart
    (UserRepository.create) check and go on instead.
    """


class NoUsableNode(pymysql.err.OperationalError):
    """No configured MySQL node could be reached as a synced member of its cluster."""


@dataclass
class DatabaseStats:
    """What the cluster did to this process's queries (for tests, logs and /metrics)."""

    conflicts: int = 0  # certification failures / deadlocks met (error 1213)
    conflict_retries: int = 0  # of those, how many were run again
    failovers: int = 0  # switches to another node (including the return to the preferred one)
    # Called with the field's name on each event (server.py: the Prometheus counter).
    on_event: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def add(self, event: str) -> None:
        setattr(self, event, getattr(self, event) + 1)
        if self.on_event is not None:
            self.on_event(event)


def error_number(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


async def retry_on_conflict(
    operation: Callable[[], Awaitable[T]],
    retries: int,
    stats: DatabaseStats | None = None,
) -> T:
    """Run `operation`; while it fails with error 1213, run it again, at most `retries` times.

    `operation` must be one whole transaction (one autocommit statement, or BEGIN…COMMIT):
    after 1213 the server has rolled all of it back. When the retries are used up the 1213
    error is raised (a storage error: the client gets DBERR, never a 500).
    """
    attempt = 0
    while True:
        try:
            return await operation()
        except pymysql.err.OperationalError as exc:
            if error_number(exc) != CONFLICT:
                raise
            if stats is not None:
                stats.add("conflicts")
            if attempt >= retries:
                raise
            attempt += 1
            if stats is not None:
                stats.add("conflict_retries")
            await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE * attempt))
