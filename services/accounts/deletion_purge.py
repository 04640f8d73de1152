"""Completing deletions whose cooling-off period is over (`python -m tools.accounts purge`).

Safe to run on several hosts at once, and again after a crash:
- a run claims due rows with one UPDATE (status pending -> purging, claimed_by = its own
  token, at most deletion.purge_batch rows): a row is claimed by exactly one run (on Galera,
  two runs claiming the same row conflict at certification and the loser's retry matches
  nothing);
- it completes only rows it claimed, each in one transaction (anonymise the user, strip the
  consent's address, status done);
- a row claimed longer ago than deletion.claim_lease (its run died) is claimed again;
- every step is idempotent: completing a completed user changes nothing.

Anonymised, not deleted: an existing ihome database's other tables (houses, orders) refer to
ih_user_profile.id, so the row stays with nothing personal in it, and the mobile and name are
free for anyone to register again (docs/SECURITY.md, "Account deletion").
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import secrets
import socket
from dataclasses import dataclass

import aiomysql

from services.accounts.consent import Clock, utc_now
from services.accounts.registered import RegisteredMobiles
from services.accounts.sessions import SessionStore
from services.config import DeletionConfig
from services.hostapp.tables import IHOME, UserTable
from services.store.db import Database

log = logging.getLogger(__name__)
# The name a purged account keeps: not a valid username (USERNAME_RE), not a mobile.
DELETED_NAME = "已注销用户{user_id}"
# mobile is VARCHAR(11) NOT NULL UNIQUE: "d" + 10 digits (INT UNSIGNED fits), never a mobile.
DELETED_MOBILE = "d{user_id:010d}"


@dataclass(frozen=True)
class PurgeReport:
    """What one run did: deletions completed, and how many it claimed."""

    completed: int
    claimed: int


def run_token() -> str:
    """Who claimed a row: host, process and a random part (unique per run)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(6)}"


class DeletionPurger:
    """Completes due deletions: claims them atomically, anonymises, ends sessions."""

    def __init__(
        self,
        db: Database,
        sessions: SessionStore,
        config: DeletionConfig,
        clock: Clock = utc_now,
        table: UserTable = IHOME,
        registered: RegisteredMobiles | None = None,
    ) -> None:
        self._db = db
        self._table = table
        self._registered = registered  # the set of registered numbers (standalone only)
        self._sessions = sessions
        self._config = config
        self._clock = clock

    async def purge(self, token: str | None = None) -> PurgeReport:
        """Claim and complete due deletions, batch after batch, until none is left."""
        token = token or run_token()
        completed = claimed = 0
        while True:
            user_ids = await self._claim(token)
            if not user_ids:
                return PurgeReport(completed, claimed)
            claimed += len(user_ids)
            for user_id in user_ids:
                completed += await self.complete(user_id, token)

    async def _claim(self, token: str) -> list[int]:
        now = self._clock().replace(microsecond=0)
        lease_ended = now - datetime.timedelta(seconds=self._config.claim_lease)

        async def claim(cur: aiomysql.Cursor) -> list[int]:
            await cur.execute(
                "UPDATE ih_account_deletion SET status = 'purging', claimed_by = %s,"
                " claimed_at = %s WHERE (status = 'pending' AND purge_after <= %s)"
                " OR (status = 'purging' AND claimed_at <= %s)"
                " ORDER BY purge_after, user_id LIMIT %s",
                (token, now, now, lease_ended, self._config.purge_batch),
            )
            await cur.execute(
                "SELECT user_id FROM ih_account_deletion"
                " WHERE claimed_by = %s AND status = 'purging' ORDER BY user_id",
                (token,),
            )
            return [int(row[0]) for row in await cur.fetchall()]

        # The claim and its read in one transaction: a conflict retries both; the token is
        # this run's own, so a retry after a lost connection reads what it claimed.
        return await self._db.transaction(claim, idempotent=True)

    async def complete(self, user_id: int, token: str) -> int:
        """Anonymise one claimed account and mark it done (1), or 0 if this run no longer
        holds the claim. Sessions end first, so none outlives the account. The number leaves
        the set of registered numbers before the row releases it, and again after."""
        await self._sessions.end_all(user_id)
        now = self._clock().replace(microsecond=0)
        released: list[str] = []

        async def anonymise(cur: aiomysql.Cursor) -> int:
            await cur.execute(
                "UPDATE ih_account_deletion SET status = 'done', completed_at = %s"
                " WHERE user_id = %s AND claimed_by = %s AND status = 'purging'",
                (now, user_id, token),
            )
            if cur.rowcount != 1:
                return 0  # retaken by another run after the lease: it completes it
            table = self._table
            if self._registered is not None:
                # The number as the row holds it, locked until the commit; out of the set
                # first (a Redis failure rolls this back: the number stays taken).
                await cur.execute(
                    f"SELECT mobile FROM {table.table} WHERE id = %s FOR UPDATE", (user_id,)
                )
                row = await cur.fetchone()
                if row is not None and row[0]:
                    await self._registered.removing(row[0])
                    released.append(row[0])
            cleared = "".join(f", {column} = {value}" for column, value in table.cleared)
            await cur.execute(
                f"UPDATE {table.table} SET {table.name_column} = %s, mobile = %s,"
                f" {table.password_column} = '!'{cleared} WHERE id = %s",
                (
                    DELETED_NAME.format(user_id=user_id),
                    DELETED_MOBILE.format(user_id=user_id),
                    user_id,
                ),
            )
            await cur.execute(
                "UPDATE ih_user_consent SET client_address = NULL WHERE user_id = %s",
                (user_id,),
            )
            return 1

        try:
            done = await self._db.transaction(anonymise)
        except BaseException:
            if self._registered is not None and released:  # rolled back: maybe still held
                await asyncio.shield(self._registered.removed(released[-1]))
                await asyncio.shield(self._registered.still_held(released[-1]))
            raise
        if self._registered is not None and released:  # a retried transaction read it again
            await self._registered.removed(released[-1])
        if done:
            log.info("account %d deleted (purged)", user_id)
        return done
