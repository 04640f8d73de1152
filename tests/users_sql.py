"""Users written with SQL behind the server's back, keeping its set of registered numbers exact
(docs/SECURITY.md, "Registered numbers"; services/accounts/registered.py).

The suite runs with the set on, as it ships. A test that inserts or deletes a row of the user
table itself does what the server's own writes do: the number joins the set after its row
committed (the epoch read before the row), or leaves it before the row releases it and again
after, through the same RegisteredMobiles calls (for a server in another process, the same Lua
script on the same keys). So the set stays ready and every answer the tests see is the one a
deployment gives.
"""

from __future__ import annotations

import contextlib

import redis

from services.accounts.registered import SET_TTL
from services.store import keys, redis_scripts

INSERT = "INSERT INTO ih_user_profile (name, password_hash, mobile) VALUES (%s, %s, %s)"
ADD_ATTEMPTS = 100


async def insert_user(
    services, mobile: str, name: str | None = None, password_hash: str = "x"
) -> None:
    """A row of ih_user_profile inserted directly (as another process, or a host, would), then
    the number added to the set as UserRepository.create adds it."""
    registered = services.users.registered
    seen = await registered.epoch() if registered is not None else None
    await services.db.execute(INSERT, (name or mobile, password_hash, mobile))
    if registered is not None:
        await registered.added(mobile, seen)


async def delete_user(services, mobile: str) -> None:
    """The row holding `mobile` deleted directly, the number out of the set before and after
    (as the deletion purge and a change of mobile release one)."""
    registered = services.users.registered
    if registered is not None:
        await registered.removing(mobile)
    try:
        await services.db.execute("DELETE FROM ih_user_profile WHERE mobile = %s", (mobile,))
    finally:
        if registered is not None:
            await registered.removed(mobile)


def insert_user_sync(
    mariadb_server, redis_client: redis.Redis, mobile: str, password_hash: str
) -> None:
    """insert_user for a server in another process (tests/browser): the same registered_add
    script on the same keys. A moved epoch (a rebuild began, or a removal) is read again: the
    row has committed, so an add made with an epoch read after the commit is exact."""
    add = redis_client.register_script(redis_scripts.script_source("registered_add"))
    set_key, epoch_key = keys.registered_set_key(), keys.registered_epoch_key()
    seen = redis_client.get(epoch_key) or 0
    with contextlib.closing(mariadb_server.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute(INSERT, (mobile, password_hash, mobile))
    for _ in range(ADD_ATTEMPTS):
        if add(keys=[set_key, epoch_key], args=[mobile, str(int(seen)), SET_TTL]):
            return
        seen = redis_client.get(epoch_key) or 0
    raise AssertionError(f"could not add {mobile} to the set of registered numbers")
