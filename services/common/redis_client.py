"""The services' Redis client: redis-py's asyncio client with commands packed by hiredis.

redis-py packs the commands of its asyncio connections in Python (~0.6 µs an argument, measured
with 2,000-key commands) while its sync connections use hiredis's C packer (~0.07 µs). Ingest
sends about three arguments per vote (dedupe lookup and marker, rate limits) and the rating
worker thousands per batch, so packing showed in both profiles. The bytes are the same (tested
in tests/unit/test_redis_client.py); only the packer differs.

A URL ``redis+cluster://host:port,host:port,.../0`` (``rediss+cluster://`` with TLS) gives
redis-py's cluster client instead (``redis.asyncio.cluster.RedisCluster``), its nodes'
connections packed the same way; every node listed is a seed, and a cluster has only db 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    DataError,
    MasterDownError,
    MovedError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import PodiumSettings

log = logging.getLogger(__name__)

# What "Redis cannot serve this request now" raises: transient, retried by the services (the
# rating worker retries its batch, ingest and api answer 503 with Retry-After, never 500). The
# one list every service uses (tests/unit/test_redis_unavailable.py):
# - any Redis: the server is down or restarting (BusyLoadingError while it loads its AOF), the
#   connection broke, or no pooled connection came free within the pool's wait (a blocking pool
#   raises ConnectionError "No connection available."; MaxConnectionsError), a timeout;
# - a Redis Cluster while a master fails over: CLUSTERDOWN (ClusterDownError; MasterDownError
#   from a replica cut off from its master), TRYAGAIN during a slot migration, a slot with no
#   master in the client's map (SlotNotCoveredError, not a RedisError), MOVED/ASK redirections the
#   client stopped following (AskError, MovedError), "TTL exhausted" (ClusterError): each gone
#   once the replica is promoted and the client has re-read the slots.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError, RedisTimeoutError, ClusterError, ClusterDownError, MasterDownError,
    TryAgainError, AskError, MovedError, SlotNotCoveredError)
# Whatever a Redis call may fail with at run time (for the paths that fail open: the dedupe
# lookup, the rate limits): any RedisError, and the cluster's errors that are not RedisErrors.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, *REDIS_UNAVAILABLE)
# What the rating worker's loops wait out and retry (a batch, a refit, a write owed): the above
# and a bare OSError (a socket error the client did not wrap).
REDIS_RETRYABLE: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE, OSError)
CLUSTER_MIN_RETRIES = 1
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
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


class ClusterUnreachable(RedisConnectionError):
    """No seed of a Redis Cluster answered (redis-py raises a bare RedisClusterException, which
    is not a RedisError: as a ConnectionError it is "Redis unavailable", a 503, like a down
    single Redis)."""


class NotACluster(RedisClusterException):
    """A node of a ``redis+cluster://`` URL answered but is not in cluster mode: a
    misconfiguration, never served by falling back to a single Redis."""


class PackedRedisCluster(RedisCluster):
    """redis-py's asyncio cluster client whose node connections pack commands by hiredis.

    RedisCluster builds its nodes' connections from ``connection_class`` in its
    ``connection_kwargs`` (fixed to ``Connection``, not an argument): set here for the seed
    nodes and, through the shared kwargs, for every node discovered later."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        plain = self.connection_kwargs["connection_class"]
        packed = _PACKED.get(plain, plain)
        self.connection_kwargs["connection_class"] = packed
        for node in self.startup_nodes:
            node.connection_class = packed

    async def initialize(self, *args: Any, **kwargs: Any) -> PackedRedisCluster:
        try:
            await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            message = str(exc)
            if "Cluster mode is not enabled" in message:
                raise NotACluster(f"{self._seeds()} is not a Redis Cluster (cluster mode is not "
                                  "enabled there; a single Redis takes a redis:// URL)") from exc
            if "cannot be connected" in message or "not covered" in message:
                raise ClusterUnreachable(f"Redis Cluster {self._seeds()}: {message}") from exc
            raise
        return self

    def _seeds(self) -> str:
        return ",".join(f"{n.host}:{n.port}" for n in self.startup_nodes)


RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""What the services take: a single Redis or a Redis Cluster (``connect`` picks by URL)."""
RedisPipeline: TypeAlias = Pipeline | ClusterPipeline
"""A pipeline of either client (a cluster pipeline sends each node its commands)."""


@dataclass(frozen=True)
class ClusterUrl:
    """A parsed ``redis+cluster://`` URL: the seed nodes and the connection options."""

    seeds: tuple[tuple[str, int], ...]
    options: dict[str, Any]


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterUrl:
    """``redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value]``: every
    node a seed; db must be 0 (a cluster has no other). Raises ValueError saying what is
    wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster://host:port,...): {url!r}")
    parts = urlsplit(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}")
    credentials, at, hosts = parts.netloc.rpartition("@")
    seeds = tuple(_seed(node, url) for node in hosts.split(",") if node.strip())
    if not seeds:
        raise ValueError(f"a Redis Cluster URL names no node (host:port,...): {url!r}")
    db = parts.path.lstrip("/")
    if db not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only db 0, the URL asks for db {db!r}: {url!r}")
    first = f"{seeds[0][0]}:{seeds[0][1]}"
    options: dict[str, Any] = dict(parse_url(f"{parts.scheme}://{credentials}{at}{first}/0"
                       f"{'?' + parts.query if parts.query else ''}"))
    for name in ("host", "port", "db", "path"):
        options.pop(name, None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return ClusterUrl(seeds, options)


def _seed(node: str, url: str) -> tuple[str, int]:
    host, sep, port = node.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a Redis Cluster node must be host:port, got {node.strip()!r} in "
                         f"{url!r}")
    return unquote(host), int(port)


def connect_cluster(
    url: str,
    *,
    max_connections: int | None = None,
    retries: int = 0,
    **kwargs: Any,
) -> PackedRedisCluster:
    """The cluster client of a ``redis+cluster://`` URL: ``max_connections`` per node (past it
    a command fails at once with MaxConnectionsError, a ConnectionError: the cluster client has
    no blocking pool), and ``retries`` (at least ``CLUSTER_MIN_RETRIES``) attempts after a
    connection error, a timeout or a slot without a master (each re-reads the cluster's slots,
    so a promoted replica is found)."""
    parsed = parse_cluster_url(url)
    options: dict[str, Any] = {**parsed.options, **kwargs}
    if max_connections is not None:
        options["max_connections"] = max_connections
    # at least one retry: it is how the cluster client learns of a failover. A pipeline that
    # fails with no retry left does not mark the slots stale, so a worker without retries kept
    # dialling the dead master for good (tests/e2e/test_redis_cluster.py)
    options["retry"] = Retry(ExponentialWithJitterBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S),
                             max(retries, CLUSTER_MIN_RETRIES))
    # the dead master's slots stay unserved until its replica is promoted: the other masters'
    # slots go on being served meanwhile
    options.setdefault("require_full_coverage", False)
    return PackedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.seeds], **options)


def connect(
    url: str,
    *,
    max_connections: int | None = None,
    pool_timeout_s: float | None = None,
    retries: int = 0,
    **kwargs: Any,
) -> RedisClient:
    """``redis.asyncio.Redis.from_url(url, **kwargs)`` with hiredis packing (any URL scheme).

    ``max_connections``: a blocking pool of that many connections, where a command waits up to
    ``pool_timeout_s`` for a free one (then ConnectionError), instead of redis-py's default pool
    that raises MaxConnectionsError at once past 100. ``retries``: a command whose connection
    fails is retried that many times, each on a reconnected connection after a short jittered
    backoff (without it a connection that died with a Redis restart fails the next command).

    A ``redis+cluster://`` URL gives a cluster client (``connect_cluster``)."""
    if is_cluster_url(url):
        return connect_cluster(url, max_connections=max_connections, retries=retries, **kwargs)
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


def connect_for_requests(settings: PodiumSettings) -> RedisClient:
    """The Redis client of an HTTP service: a bounded, blocking pool, and retries on a fresh
    connection (``redis_max_connections``, ``redis_pool_timeout_s``, ``redis_retries``)."""
    return connect(settings.redis_url, max_connections=settings.redis_max_connections,
                   pool_timeout_s=settings.redis_pool_timeout_s, retries=settings.redis_retries)


async def execute_and_publish(
    client: RedisClient, queue: Callable[[RedisPipeline], object], channel: str, message: str
) -> None:
    """The commands ``queue`` adds to a pipeline, then a PUBLISH of ``message`` on ``channel``:
    one round trip on a single Redis; a cluster pipeline refuses PUBLISH (redis-py), so there
    the PUBLISH follows the pipeline (a cluster delivers it to subscribers on every node)."""
    async with client.pipeline(transaction=False) as pipe:
        queue(pipe)
        if not isinstance(client, RedisCluster):
            pipe.publish(channel, message)
        await pipe.execute()
    if isinstance(client, RedisCluster):
        await client.publish(channel, message)


async def check_topology(client: RedisClient) -> None:
    """At start-up: a cluster client reads the cluster's slots now. A URL naming a node that is
    not in cluster mode stops the service (NotACluster raised: never served as a single Redis);
    an unreachable cluster is logged as an error and the service starts, its ``/readyz``
    answering 503 until the cluster answers. A single Redis is not checked here."""
    if not isinstance(client, RedisCluster):
        return
    try:
        await client.initialize()
    except ClusterUnreachable as exc:
        log.error("Redis Cluster unreachable at start-up: %s (readiness answers 503 until it "
                  "answers)", exc)
