"""The Redis client the services take: one server or a cluster (server.redis_client builds it)."""

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

# Both speak the same commands and run the same scripts; every multi-key step keeps its keys in
# one hash slot (services/store/keys.py), so no service needs to know which one it has.
RedisClient = Redis | RedisCluster


def decoded(reply: bytes | str) -> str:
    """A reply as text: ours always is (decode_responses=True); redis-py types it either way."""
    return reply.decode() if isinstance(reply, bytes) else reply
