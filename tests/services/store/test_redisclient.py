"""The Redis client the services take: commands packed by hiredis, as redis-py's synchronous
client packs them (services/store/redisclient.py, issue 26 goal 2)."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from services.store.redisclient import HiredisPacking, hiredis_packing, redis_client

# What the services send: names, keys, numbers (ints, floats, ms), Chinese text, raw bytes.
COMMANDS = [
    ("SET", "image_code:abc", "ABCD", "EX", 300),
    ("EVALSHA", "0" * 40, 3, "k1", "{13800138000}:k2", "k3", 1.5, 0.1, 1e-05, 12_345_678_901, -3),
    ("HSET", "send:x", "reason", "短信服务繁忙", "raw", b"\x00\xff\r\n"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "smsreg"),
]


@pytest.mark.parametrize("args", COMMANDS)
def test_hiredis_packs_the_same_bytes_as_redis_pys_python_packer(args):
    packed = hiredis_packing(Connection)()
    assert isinstance(packed, HiredisPacking)
    assert b"".join(packed.pack_command(*args)) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("value", [None, True, ["a"], {"a": 1}])
def test_a_value_redis_cannot_take_is_the_same_data_error(value):
    for connection in (Connection(), hiredis_packing(Connection)()):
        with pytest.raises(DataError):
            connection.pack_command("SET", "k", value)


def test_each_kind_of_connection_keeps_its_kind():
    for kind in (Connection, UnixDomainSocketConnection, SSLConnection):
        packed = hiredis_packing(kind)
        assert issubclass(packed, kind) and issubclass(packed, HiredisPacking)
        assert hiredis_packing(kind) is packed  # one class per kind


@pytest.mark.gen_test(timeout=30)
async def test_the_servers_client_packs_with_hiredis_and_round_trips(config):
    client = redis_client(config)
    try:
        assert issubclass(client.connection_pool.connection_class, HiredisPacking)
        await client.set("packing:text", "短信 \r\n ok", ex=60)
        assert await client.get("packing:text") == "短信 \r\n ok"
        script = client.register_script("return {KEYS[1], ARGV[1], ARGV[2]}")
        assert await script(keys=["packing:k"], args=[1.5, -3]) == ["packing:k", "1.5", "-3"]
    finally:
        await client.aclose()
