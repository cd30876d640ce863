"""Fixtures shared by every test tier. Kafka and Redis start once per run (see support.infra)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.support.cluster import Cluster, running_cluster
from tests.support.infra import Infra, session_infra, unique_prefix


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with session_infra() as running:
        yield running


@pytest.fixture(scope="session")
def cluster_infra() -> Iterator[Cluster]:
    """The production topology's brokers and Redis Cluster, started once per run when a test
    asks for them (tests/support/cluster.py)."""
    with running_cluster() as running:
        yield running


@pytest.fixture
def cluster(cluster_infra: Cluster) -> Cluster:
    """The session's cluster with every node running (restarting any a previous test left
    stopped or killed)."""
    cluster_infra.ensure_running()
    return cluster_infra


@pytest.fixture
def prefix() -> str:
    """A topic and key prefix of this test's own."""
    return unique_prefix()


@pytest.fixture
async def redis_client(infra: Infra) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(infra.redis_url)
    try:
        yield client
    finally:
        await client.aclose()
