"""The Redis client the services take: one server or a cluster, and how it is built
(redis_client: the server, the scripts and the tools open it the same way)."""

from collections.abc import Callable
from typing import TypedDict, cast

import redis.asyncio as aioredis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT
from redis.utils import HIREDIS_AVAILABLE

from services.config import Config, cluster_nodes

# Both speak the same commands and run the same scripts; every multi-key step keeps its keys in
# one hash slot (services/store/keys.py), so no service needs to know which one it has.
RedisClient = Redis | RedisCluster


def decoded(reply: bytes | str) -> str:
    """A reply as text: ours always is (decode_responses=True); redis-py types it either way."""
    return reply.decode() if isinstance(reply, bytes) else reply


class HiredisPacking:
    """Commands packed by hiredis (C), as redis-py's synchronous client packs them.

    redis-py's asyncio connections pack every command in Python, argument by argument: with
    the ~60 arguments of a send's reservation script and the eight commands of its records,
    that was the largest single cost of a send in a profile (issue 26 goal 2: pack_command
    17 % of the in-process send's CPU under cProfile). redis-py's own HiredisRespSerializer
    gives the same bytes (tests/services/store/test_redisclient.py) and the same DataError
    for a value Redis cannot take."""

    # redis-py types its argument loosely (List); it takes the command's arguments.
    _pack = cast("Callable[..., list[bytes]]", HiredisRespSerializer().pack)

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        return self._pack(*args)


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def hiredis_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (TCP, Unix socket or TLS, as the URL says) packing with hiredis."""
    if not HIREDIS_AVAILABLE:
        return connection_class
    if connection_class not in _PACKING:
        name = f"Hiredis{connection_class.__name__}"
        _PACKING[connection_class] = type(name, (HiredisPacking, connection_class), {})
    return _PACKING[connection_class]


class RedisOptions(TypedDict):
    """The client settings a single-node pool and a cluster client share."""

    decode_responses: bool
    socket_timeout: float
    socket_connect_timeout: float
    max_connections: int
    retry: Retry


def redis_client(config: Config) -> RedisClient:
    """A Redis client that fails fast: one reconnect attempt, no backoff, bounded sockets."""
    options = RedisOptions(
        decode_responses=True,
        socket_timeout=config.redis.socket_timeout,
        socket_connect_timeout=config.redis.connect_timeout,
        max_connections=config.redis.max_connections,
        # After a Redis restart the pooled sockets are dead: retry once on a new connection,
        # but never wait: a client should get DBERR within the timeout, not after backoff.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    if config.redis.mode == "cluster":
        # Every multi-key step keeps its keys in one slot through hash tags
        # (services/store/keys.py).
        nodes = [
            ClusterNode(host, port) for host, port in cluster_nodes(config.redis.cluster_nodes)
        ]
        return RedisCluster(startup_nodes=nodes, **options)
    # A blocking pool: when every connection is busy (a burst larger than max_connections),
    # a request waits up to socket_timeout for one instead of failing at once.
    pool = aioredis.BlockingConnectionPool.from_url(
        config.redis.url, timeout=config.redis.socket_timeout, **options
    )
    pool.connection_class = hiredis_packing(pool.connection_class)
    return aioredis.Redis.from_pool(pool)
