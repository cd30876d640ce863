"""Readiness probes of Kafka and Redis, shared by the services' ``/readyz``."""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from services.common.redis_client import RedisClient, connect

log = logging.getLogger(__name__)


async def redis_ready(client: RedisClient, timeout_s: float = 2.0) -> bool:
    """A single Redis answers PING; a cluster says ``cluster_state:ok`` (every slot has a
    master that answers, as a node sees it)."""
    try:
        async with asyncio.timeout(timeout_s):
            if isinstance(client, RedisCluster):
                info = await client.cluster_info()
                return bool(info.get("cluster_state") == "ok")
            await client.ping()
    except (aioredis.RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        log.debug("redis probe failed: %r", exc)
        return False
    return True


class RedisProbe:
    """Is Redis reachable: a PING on a connection of the probe's own, not one of the request
    pool (a pool whose connections are all busy says nothing about Redis: readiness must not
    fail, and take the service out of rotation, because it is loaded). One PING at a time; its
    answer is shared by the probes that come within ``ttl_s``."""

    def __init__(self, url: str, timeout_s: float = 2.0, ttl_s: float = 0.5) -> None:
        self._client = connect(url, max_connections=1, pool_timeout_s=timeout_s, retries=1,
                               socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._checked_at = float("-inf")
        self._reachable = False
        self._lock = asyncio.Lock()

    async def reachable(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._ttl_s:
                self._reachable = await redis_ready(self._client, self._timeout_s)
                self._checked_at = time.monotonic()
            return self._reachable

    async def close(self) -> None:
        await self._client.aclose()


class KafkaProbe:
    """One admin client and one group-less consumer, opened on first use and reopened after a
    failure: answers "is the cluster reachable" (cached for ``ttl_s``) and a group's lag."""

    def __init__(self, bootstrap: str, timeout_s: float = 3.0, ttl_s: float = 1.0) -> None:
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._checked_at = float("-inf")
        self._reachable = False
        self._lock = asyncio.Lock()

    async def reachable(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at < self._ttl_s:
                return self._reachable
            try:
                async with asyncio.timeout(self._timeout_s):
                    admin = await self._admin_client()
                    await admin.describe_cluster()
                self._reachable = True
            except (KafkaError, OSError, TimeoutError) as exc:
                log.debug("kafka probe failed: %r", exc)
                await self._reset()
                self._reachable = False
            self._checked_at = time.monotonic()
            return self._reachable

    async def group_lag(self, group: str, topic: str) -> dict[int, int]:
        """Per partition of ``topic``: end offset minus the group's committed offset (the whole
        partition when the group has committed nothing yet). Raises KafkaError or TimeoutError."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout_s):
                    admin = await self._admin_client()
                    committed = await admin.list_consumer_group_offsets(group)
                    [described] = await admin.describe_topics([topic])
                    parts = [] if described.get("error_code") else [
                        p["partition"] for p in described.get("partitions", [])]
                    tps = [TopicPartition(topic, p) for p in sorted(parts)]
                    if not tps:
                        return {}
                    consumer = await self._offsets_consumer()
                    ends = await consumer.end_offsets(tps)
                    starts = await consumer.beginning_offsets(tps)
            except (KafkaError, OSError, TimeoutError):
                await self._reset()
                raise
        lag = {}
        for tp in tps:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lag[tp.partition] = max(0, ends[tp] - position)
        return lag

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap,
                                        request_timeout_ms=int(self._timeout_s * 1000))
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        return self._admin

    async def _offsets_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap,
                                        enable_auto_commit=False,
                                        request_timeout_ms=int(self._timeout_s * 1000))
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer

    async def _reset(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if admin is not None:
            try:
                await admin.close()
            except (KafkaError, OSError) as exc:
                log.debug("closing the probe's admin client: %r", exc)
        if consumer is not None:
            await consumer.stop()

    async def close(self) -> None:
        async with self._lock:
            await self._reset()
