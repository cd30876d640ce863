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
from redis.exceptions import DataError


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


def connect(url: str, **kwargs: Any) -> aioredis.Redis:
    """``redis.asyncio.Redis.from_url(url, **kwargs)`` with hiredis packing (any URL scheme)."""
    options = {**parse_url(url), **kwargs}
    plain = options.get("connection_class", Connection)
    options["connection_class"] = _PACKED.get(plain, plain)
    return aioredis.Redis.from_pool(aioredis.ConnectionPool(**options))  # owns the pool
