"""The services' Redis client: redis-py's asyncio client with commands packed by hiredis.

redis-py packs the commands of its asyncio connections in Python (~0.6 µs an argument, measured
with 2,000-key commands) while its sync connections use hiredis's C packer (~0.07 µs). Ingest
sends about three arguments per vote (dedupe lookup and marker, rate limits) and the rating
worker thousands per batch, so packing showed in both profiles. The bytes are the same (tested
in tests/unit/test_redis_client.py); only the packer differs.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import PodiumSettings

# What "Redis cannot serve this request now" raises: the server is down or restarting, the
# connection broke, or no pooled connection came free within the pool's wait (a blocking pool
# raises ConnectionError "No connection available."). Such a request is answered 503 with
# Retry-After, never 500.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
# Backoff between retries of a command whose connection failed: 20 ms, 40 ms, ... at most 0.5 s
RETRY_BASE_S = 0.02
RETRY_CAP_S = 0.5


class _HiredisPacking:
    """Mixin: ``pack_command`` by hiredis (same splitting of multi-word command names)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:  # the common case first: no per-argument Python work (thousands in a batch)
            return [hiredis.pack_command(args)]
        except TypeError:
            pass
        # hiredis refuses bytearrays (and memoryviews before 2.2): as bytes, then try again
        args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # what redis-py's encoder raises for such a value
            raise DataError(str(exc)) from exc


class PackedConnection(_HiredisPacking, Connection):
    pass


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


def connect(
    url: str,
    *,
    max_connections: int | None = None,
    pool_timeout_s: float | None = None,
    retries: int = 0,
    **kwargs: Any,
) -> aioredis.Redis:
    """``redis.asyncio.Redis.from_url(url, **kwargs)`` with hiredis packing (any URL scheme).

    ``max_connections``: a blocking pool of that many connections, where a command waits up to
    ``pool_timeout_s`` for a free one (then ConnectionError), instead of redis-py's default pool
    that raises MaxConnectionsError at once past 100. ``retries``: a command whose connection
    fails is retried that many times, each on a reconnected connection after a short jittered
    backoff (without it a connection that died with a Redis restart fails the next command)."""
    options = {**parse_url(url), **kwargs}
    plain = options.get("connection_class", Connection)
    options["connection_class"] = _PACKED.get(plain, plain)
    if retries:
        options["retry"] = Retry(ExponentialWithJitterBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S),
                                 retries)
    pool: aioredis.ConnectionPool
    if max_connections is None:
        pool = aioredis.ConnectionPool(**options)
    else:
        pool = aioredis.BlockingConnectionPool(max_connections=max_connections,
                                               timeout=pool_timeout_s, **options)
    return aioredis.Redis.from_pool(pool)  # owns the pool


def connect_for_requests(settings: PodiumSettings) -> aioredis.Redis:
    """The Redis client of an HTTP service: a bounded, blocking pool, and retries on a fresh
    connection (``redis_max_connections``, ``redis_pool_timeout_s``, ``redis_retries``)."""
    return connect(settings.redis_url, max_connections=settings.redis_max_connections,
                   pool_timeout_s=settings.redis_pool_timeout_s, retries=settings.redis_retries)
