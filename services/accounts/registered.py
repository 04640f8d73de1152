"""RegisteredMobiles: "is this number registered?" from a write-through Redis set, exact or
unknown, so that a send need not ask MySQL (docs/SECURITY.md, "Registered numbers").

The set holds every mobile of the user table while its ready marker stands; the marker is
set only by a rebuild from MySQL that no removal raced. The rules that keep it exact:
- a number is added only after its row committed, and only if no removal (nor a rebuild's
  start) raised the epoch since before the row was written: a late add cannot bring back a
  number that was released meanwhile (if it could not be added, a SELECT confirms it first);
- a number is removed BEFORE its row releases it (deletion purge, change of mobile), and
  again after, each removal raising the epoch: if the first removal fails, the row is not
  touched; a crash in between leaves a registered number outside the set, the harmless side;
- a rebuild (marker absent: first start, Redis flushed, key evicted, the marker's daily
  expiry) empties the set, streams the mobiles from MySQL in batches and sets the marker only
  if the epoch is still the one it began with; one rebuild at a time across processes.

So a "registered" answer is exact; a "not registered" one may only be wrong the harmless
way (a register code sent, MySQL refusing the registration: it stays the arbiter), and a
caller that needs a registered number asks MySQL on "not registered" too. With a host app
(host_app.kind not standalone) its own code inserts users behind our back: the set is not
built there at all (server.open_services), every answer comes from MySQL.

The answer is one small script (services/store/lua/registered_check.lua) made of the piece
services/store/lua/pieces/registered_mobile.lua, the rule a composed script can reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from services.config import Config
from services.hostapp.tables import UserTable
from services.store import keys, redis_scripts
from services.store.db import Database
from services.store.redisclient import RedisClient

log = logging.getLogger(__name__)

BATCH = 5000  # rows per SELECT and per SADD of a rebuild
READY_TTL = 86400  # s: the marker expires daily, so any drift heals with the next rebuild
SET_TTL = READY_TTL + 3600  # s: the set outlives its marker
EPOCH_TTL = 7 * 86400  # s, renewed by every removal and every rebuild's start
LOCK_MS = 60_000  # a rebuild's lock, extended by each batch (a dead rebuild frees it)
RETRY_PAUSE = 30.0  # s between a process's attempts, and after a rebuild a removal spoiled
# What a rebuild keeps: an 11-digit number (a purged account's "d0000000042" is none).
STORED_MOBILE = re.compile(r"[0-9]{11}")
REDIS_FAILURES = (RedisError, OSError)


def set_used(config: Config) -> bool:
    """Whether this deployment keeps the set: only where nothing but this server and its
    tools writes the user table (no host app) and accounts.registered_set is on."""
    return config.host_app.standalone and config.accounts.registered_set


def started(
    config: Config,
    redis: RedisClient,
    db: Database,
    table: UserTable,
    stack: contextlib.AsyncExitStack,
) -> RegisteredMobiles | None:
    """The set for server.open_services, rebuilt in the background if it is not ready (and
    its rebuild stopped with the stack); none with a host app, which inserts users behind
    our back, or with accounts.registered_set off."""
    if not set_used(config):
        return None
    mobiles = RegisteredMobiles(redis, db, table)
    mobiles.kick()
    stack.push_async_callback(mobiles.close)
    return mobiles


class Rebuild(enum.Enum):
    """How a rebuild ended."""

    READY = "ready"  # the set is exact, the marker set
    SKIPPED = "skipped"  # already ready, or another rebuild (or its pause) holds the lock
    RACED = "raced"  # a removal raised the epoch meanwhile: not marked, retried later
    LOST = "lost"  # the lock expired under it: another rebuild took over


class RegisteredMobiles:
    """The write-through set of registered mobiles, its ready marker and its rebuild."""

    def __init__(
        self,
        redis: RedisClient,
        db: Database,
        table: UserTable,
        *,
        batch: int = BATCH,
        retry_pause: float = RETRY_PAUSE,
    ) -> None:
        self._redis = redis
        self._db = db
        self._table = table
        self._batch = batch
        self._retry_pause = retry_pause
        self._check = redis_scripts.register(redis, "registered_check")
        self._add = redis_scripts.register(redis, "registered_add")
        self._remove = redis_scripts.register(redis, "registered_remove")
        self._begin = redis_scripts.register(redis, "registered_rebuild_begin")
        self._fill = redis_scripts.register(redis, "registered_rebuild_batch")
        self._finish = redis_scripts.register(redis, "registered_rebuild_finish")
        self._task: asyncio.Task[None] | None = None
        self._next_kick = 0.0
        # Test seam: awaited after a rebuild read a batch from MySQL, before it adds it to the
        # set (where a removal racing the rebuild does harm: a race played deterministically).
        self.after_read: Callable[[], Awaitable[None]] | None = None

    # --- answers ---------------------------------------------------------------------------

    async def registered(self, mobile: str) -> bool | None:
        """True registered, False not, None unknown (ask MySQL); unknown starts a rebuild."""
        try:
            answer = await self._check(
                keys=[keys.registered_ready_key(), keys.registered_set_key()], args=[mobile]
            )
        except REDIS_FAILURES as exc:
            log.debug("registered set unreadable, asking MySQL: %r", exc)
            return None
        if answer == -1:
            self.kick()
            return None
        return bool(answer)

    # --- write-through ---------------------------------------------------------------------

    async def epoch(self) -> int | None:
        """Read before writing a row that will hold a number; added() needs it. None: unread."""
        try:
            return int(await self._redis.get(keys.registered_epoch_key()) or 0)
        except REDIS_FAILURES as exc:
            log.warning("registered set: epoch unreadable: %r", exc)
            return None

    async def added(self, mobile: str, seen: int | None) -> None:
        """After a row holding `mobile` committed. Never raises: the registration stands."""
        try:
            if seen is not None and await self._add_if(mobile, seen):
                return
            if seen is not None and await self._confirm(mobile):
                return
        except Exception as exc:  # Redis, or MySQL in the confirming SELECT
            log.warning("registered set: could not add a number (%r); dropping the marker", exc)
            await self.invalidate()
            return
        if seen is None:
            await self.invalidate()

    async def removing(self, mobile: str) -> int:
        """Before a row releases `mobile`: out of the set, epoch raised. Raises if Redis
        fails, and then the row must not be changed. Returns the new epoch."""
        return await self._remove_once(mobile)

    async def removed(self, mobile: str) -> None:
        """After the row released `mobile` (or tried to): out again, epoch raised again, so a
        rebuild that read the row between the two is not marked ready. Never raises."""
        try:
            await self._remove_once(mobile)
        except REDIS_FAILURES as exc:
            log.warning("registered set: second removal failed (%r); dropping the marker", exc)
            await self.invalidate()

    async def still_held(self, mobile: str) -> None:
        """A change that removed `mobile` first did not release it: put it back if its row
        still holds it (a SELECT decides). Never raises."""
        try:
            await self._confirm(mobile)
        except Exception as exc:  # Redis, or MySQL in the confirming SELECT
            log.warning("registered set: could not put a number back: %r", exc)
            await self.invalidate()

    async def _add_if(self, mobile: str, seen: int) -> bool:
        added = await self._add(
            keys=[keys.registered_set_key(), keys.registered_epoch_key()],
            args=[mobile, str(seen), SET_TTL],
        )
        return bool(added)

    async def _confirm(self, mobile: str) -> bool:
        """Add `mobile` if its row holds it now, the epoch read before the SELECT."""
        seen = int(await self._redis.get(keys.registered_epoch_key()) or 0)
        row = await self._db.fetch_one(
            f"SELECT 1 FROM {self._table.table} WHERE mobile = %s LIMIT 1", (mobile,)
        )
        if row is None:
            return True  # nothing to add
        if await self._add_if(mobile, seen):
            return True
        log.info("registered set: a number left out (removals raced its add twice)")
        return False

    async def _remove_once(self, mobile: str) -> int:
        epoch = await self._remove(
            keys=[keys.registered_set_key(), keys.registered_epoch_key()],
            args=[mobile, EPOCH_TTL],
        )
        return int(epoch)

    async def invalidate(self) -> None:
        """The set may be wrong: unknown until rebuilt (best effort, Redis may be down).

        The epoch is raised with the marker dropped, in one transaction (one hash slot): a
        rebuild that already read the table before the change that made the set wrong (a
        DBA's edit: `python -m tools.accounts forget-registered`) can then never mark its
        set ready."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(keys.registered_epoch_key())
                pipe.expire(keys.registered_epoch_key(), EPOCH_TTL)
                pipe.delete(keys.registered_ready_key())
                await pipe.execute()
        except REDIS_FAILURES as exc:
            log.warning("registered set: could not drop the ready marker: %r", exc)

    # --- rebuild ---------------------------------------------------------------------------

    def kick(self) -> None:
        """Start a background rebuild, unless one runs here or one failed just now (a pause:
        while another process rebuilds, each answer here must not cost a try)."""
        if self._task is not None and not self._task.done():
            return
        if time.monotonic() < self._next_kick:
            return
        self._task = asyncio.get_running_loop().create_task(self._rebuild_logged())

    async def close(self) -> None:
        """Stop a rebuild in progress (its lock expires; the marker was never set)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _rebuild_logged(self) -> None:
        try:
            outcome = await self.rebuild()
        except Exception as exc:  # MySQL or Redis away: tried again on a later kick
            log.warning("registered set: rebuild failed: %r", exc)
            outcome = None
        if outcome is not Rebuild.READY:
            self._next_kick = time.monotonic() + self._retry_pause
        if outcome is not None and outcome is not Rebuild.SKIPPED:
            log.info("registered set: rebuild %s", outcome.value)

    async def rebuild(self) -> Rebuild:
        """Fill the set from MySQL and mark it ready, unless a removal raced it."""
        token = secrets.token_hex(8)
        lock, stored, epoch_key, ready = (
            keys.registered_rebuild_key(),
            keys.registered_set_key(),
            keys.registered_epoch_key(),
            keys.registered_ready_key(),
        )
        began = await self._begin(
            keys=[lock, stored, epoch_key, ready], args=[token, LOCK_MS, SET_TTL, EPOCH_TTL]
        )
        if began is None:
            return Rebuild.SKIPPED
        if not await self._fill_from_mysql(token):
            return Rebuild.LOST
        pause_ms = int(self._retry_pause * 1000)
        finished = await self._finish(
            keys=[lock, stored, epoch_key, ready],
            args=[token, str(began), READY_TTL, SET_TTL, pause_ms],
        )
        return {1: Rebuild.READY, 0: Rebuild.RACED}.get(int(finished), Rebuild.LOST)

    async def _fill_from_mysql(self, token: str) -> bool:
        """Every mobile of the table into the set, batch by batch (keyset pagination on id);
        False if the lock was lost."""
        query = f"SELECT id, mobile FROM {self._table.table} WHERE id > %s ORDER BY id LIMIT %s"
        last_id = 0
        while True:
            rows = await self._db.fetch_all(query, (last_id, self._batch))
            if not rows:
                return True
            last_id = int(rows[-1][0])
            mobiles = [m for _, m in rows if isinstance(m, str) and STORED_MOBILE.fullmatch(m)]
            if self.after_read is not None:
                await self.after_read()
            held = await self._fill(
                keys=[keys.registered_rebuild_key(), keys.registered_set_key()],
                args=[token, LOCK_MS, *mobiles],
            )
            if not held:
                return False
            if len(rows) < self._batch:
                return True
