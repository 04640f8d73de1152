"""What a Redis restart keeps (docs/OPERATIONS.md, "What a Redis restart loses"): with the
documented setting, `make run`'s own (devstack.run.dev_redis), a session survives Redis being
killed and started again; without persistence it is gone."""

from __future__ import annotations

import datetime

import pytest
import redis.asyncio as aioredis

from devstack.processes import RedisServer, free_port
from devstack.run import dev_redis
from services.accounts.sessions import SessionStore
from services.accounts.users import User

USER = User(
    user_id=42,
    name="13812345678",
    mobile="13812345678",
    password_hash="$argon2id$unused",
    avatar_url=None,
    create_time=datetime.datetime(2026, 1, 31, 12, 0, 0),
)


def crash_and_restart(server: RedisServer) -> None:
    """SIGKILL, as a crash or an OOM kill would: no shutdown save. Then start on the same port."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(10)
    server.start()


async def session_after_restart(server: RedisServer) -> tuple[object, object]:
    """A session created through the service before the crash, read back after it."""
    server.start()
    try:
        async with aioredis.from_url(server.url, decode_responses=True) as before:
            session_id = await SessionStore(before, ttl=3600).create(USER)
            assert await SessionStore(before, ttl=3600).get(session_id) is not None
        crash_and_restart(server)
        async with aioredis.from_url(server.url, decode_responses=True) as after:
            return session_id, await SessionStore(after, ttl=3600).get(session_id)
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=60)
async def test_a_session_survives_a_redis_crash_with_the_documented_setting(tmp_path):
    _, session = await session_after_restart(dev_redis(tmp_path / "redis", port=free_port()))
    assert session is not None
    who = {key: session[key] for key in ("user_id", "name", "mobile")}
    assert who == {"user_id": 42, "name": "13812345678", "mobile": "13812345678"}


@pytest.mark.gen_test(timeout=60)
async def test_without_persistence_a_redis_crash_ends_every_session(tmp_path):
    # The tests' own Redis (no AOF, no snapshot): what the documented setting prevents.
    _, session = await session_after_restart(RedisServer(tmp_path / "redis"))
    assert session is None
