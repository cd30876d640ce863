"""Replicas on the production topology (issue #17): three KRaft brokers and a Redis Cluster (the
session's ``cluster``), the services as processes on ``redis+cluster://``, several of a kind.

- A rank-change subscriber on api replica 1, which is stopped (SIGTERM) or crashes (SIGKILL)
  mid-stream, resumes on api replica 2 by Last-Event-ID: together its two streams hold every
  change of the topic from its start, in order, none lost, none repeated.
- An ingest replica restarts while a client posts through both (retrying a batch answered 503,
  or not answered, on the other): every vote answered 202 is counted exactly once.
- Two of the three Redis masters SIGKILLed (no failover possible: the survivor answers
  CLUSTERDOWN) while votes stream in, then restarted: the worker waits and retries its batch,
  and every accepted vote is counted exactly once (before, CLUSTERDOWN crashed its agent for
  good while the worker stayed up and ready)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio.cluster import RedisCluster

from services.common.redis_client import RedisClient, connect
from shared.events import RankChange
from shared.keys import KeyLayout
from shared.topics import Topics
from tests.support.cluster import Cluster
from tests.support.counts import expected_counts, stored_counts
from tests.support.infra import Infra, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess
from tests.support.sse_swarm import SseSubscriber
from tests.support.votes import mixed_votes, post_batch
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ARENAS = ("text", "vision", "coding", "webdev")
DEADLINE_S = 60


def cluster_env(infra: Infra, cluster: Cluster, prefix: str, **extra: str) -> dict[str, str]:
    """The services' settings on the cluster topology (brokers, Redis Cluster) for ``prefix``."""
    return service_env(infra, prefix, PODIUM_KAFKA_BOOTSTRAP=cluster.kafka_bootstrap,
                       PODIUM_REDIS_URL=cluster.redis_url, PODIUM_RATING_BATCH_WITHIN_S="0.02",
                       PODIUM_API_STREAM_MAX_PER_ADDRESS="100", **extra)


@contextlib.asynccontextmanager
async def replicas(env: dict[str, str], prefix: str, *labels: str
                   ) -> AsyncIterator[dict[str, ServiceProcess]]:
    """One process per label (``api-1`` is an api process), started in order; at the end each
    is stopped with SIGTERM and must exit 0."""
    started: dict[str, ServiceProcess] = {}
    try:
        for label in labels:
            process = ServiceProcess(label.split("-")[0], env, log_name=f"{label}-{prefix}")
            started[label] = process
            await process.start()
        yield started
    finally:
        codes = {label: p.stop() for label, p in started.items()}
        assert all(code in (0, None) for code in codes.values()), f"unclean stop: {codes}"


@contextlib.asynccontextmanager
async def cluster_client(cluster: Cluster) -> AsyncIterator[RedisClient]:
    client = connect(cluster.redis_url, retries=5)
    try:
        yield client
    finally:
        await client.aclose()


class ThroughBothReplicas:
    """A client posting batches to ingest replicas in turn; a batch answered 503, or not
    answered, is posted again (same vote ids) to the next replica until one answers 202."""

    def __init__(self, urls: list[str]) -> None:
        self._clients = [httpx.AsyncClient(base_url=u, timeout=30) for u in urls]
        self._turn = 0
        self.accepted: list[dict[str, Any]] = []
        self.retried: Counter[str] = Counter()

    async def post(self, votes: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while True:
            client = self._clients[self._turn % len(self._clients)]
            self._turn += 1
            try:
                r = await post_batch(client, votes)
            except httpx.TransportError:
                self.retried["no answer"] += 1
            else:
                if r.status_code == 202:
                    self.accepted.extend(votes)
                    return
                assert r.status_code == 503, r.text
                self.retried["503"] += 1
            assert loop.time() < deadline, f"a batch never accepted ({self.retried})"
            await asyncio.sleep(0.1)

    async def post_all(self, votes: Iterator[dict[str, Any]], batches: int, size: int) -> None:
        for _ in range(batches):
            await self.post([next(votes) for _ in range(size)])

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


async def counted_exactly(client: RedisClient, prefix: str, votes: list[dict[str, Any]]) -> None:
    want = expected_counts(votes)

    async def exact() -> bool:
        return await stored_counts(client, KeyLayout(prefix)) == want

    await wait_until(exact, 120, f"the {len(votes)} accepted votes counted once", 0.25)


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


def offset(event_id: str) -> int:
    return int(event_id.split(":")[1])


def changes_of(sub: SseSubscriber) -> list[tuple[str, RankChange]]:
    return [(e.id or "", RankChange.model_validate_json(e.data))
            for e in sub.events if e.event == "rank-change"]


@contextlib.asynccontextmanager
async def subscribed(api: ServiceProcess, last_event_id: str | None = None
                     ) -> AsyncIterator[SseSubscriber]:
    """An SSE subscriber to every rank change on ``api``, reading until its stream ends."""
    sub = SseSubscriber("127.0.0.1", api.port or 0, last_event_id=last_event_id)
    reader, writer = await sub.open()
    assert sub.status == 200, sub.status
    task = asyncio.create_task(sub.run(reader, writer))
    try:
        await wait_until(lambda: _true(bool(sub.ids("ready"))), DEADLINE_S, "ready")
        yield sub
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_rank_change_stream_resumes_on_the_other_api_replica(
    cluster: Cluster, infra: Infra, prefix: str, sig: signal.Signals
) -> None:
    topic = Topics(prefix + ".").rank_changes
    env = cluster_env(infra, cluster, prefix, PODIUM_API_HEARTBEAT_S="1")
    votes = mixed_votes(10**6, seed=int(sig), arenas=ARENAS)
    async with (replicas(env, prefix, "ingest-1", "rating-1", "api-1", "api-2") as ps,
                cluster_client(cluster) as redis):
        poster = ThroughBothReplicas([ps["ingest-1"].url])
        try:
            async with subscribed(ps["api-1"]) as first:
                start = offset(first.ids("ready")[0]) + 1
                posting = asyncio.create_task(poster.post_all(votes, 60, 40))
                await wait_until(lambda: _true(len(first.ids()) >= 20), DEADLINE_S,
                                 "20 rank changes on api-1")
                stopped = asyncio.create_task(asyncio.to_thread(ps["api-1"].stop, sig))
                await wait_until(lambda: _true(first.ended), 10, "the stream's end on api-1")
                assert await stopped == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
            async with subscribed(ps["api-2"], first.last_event_id) as moved:
                assert moved.ids("ready") == [first.last_event_id]
                await ps["api-1"].start()  # api-1 back, serving new streams
                await posting
                await counted_exactly(redis, prefix, poster.accepted)

                async def delivered_to_the_end() -> bool:
                    end = await end_offset(cluster.kafka_bootstrap, topic)
                    return moved.last_event_id == f"0:{end - 1}"

                await wait_until(delivered_to_the_end, DEADLINE_S, "every change on api-2")
        finally:
            await poster.aclose()
        topic_changes = [RankChange.model_validate_json(v) for v in
                         await read_topic(cluster.kafka_bootstrap, topic, settle_s=0)]
        got = changes_of(first) + changes_of(moved)
        assert [i for i, _ in got] == [f"0:{n}" for n in range(start, len(topic_changes))]
        assert [c for _, c in got] == topic_changes[start:]
        assert len(changes_of(first)) >= 20 and changes_of(moved), "both streams had changes"
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{ps['api-1'].url}/readyz")).status_code == 200


async def test_an_ingest_replica_restarts_while_a_client_posts_through_both(
    cluster: Cluster, infra: Infra, prefix: str
) -> None:
    env = cluster_env(infra, cluster, prefix)
    votes = mixed_votes(10**6, seed=29, arenas=ARENAS)
    async with (replicas(env, prefix, "ingest-1", "ingest-2", "rating-1") as ps,
                cluster_client(cluster) as redis):
        poster = ThroughBothReplicas([ps["ingest-1"].url, ps["ingest-2"].url])
        try:
            await poster.post_all(votes, 10, 100)
            posting = asyncio.create_task(poster.post_all(votes, 40, 100))

            async def restart() -> None:
                assert await asyncio.to_thread(ps["ingest-1"].stop) == 0
                await ps["ingest-1"].start()

            await restart()
            await posting
            assert poster.retried, "the restart was never seen by the client"
            await counted_exactly(redis, prefix, poster.accepted)
            assert len(poster.accepted) == 5_000
        finally:
            await poster.aclose()


async def cluster_state(port: int) -> str:
    client = aioredis.Redis(port=port)
    try:
        return str((await client.execute_command("CLUSTER INFO"))["cluster_state"])
    finally:
        await client.aclose()


async def test_votes_count_exactly_through_a_redis_cluster_outage(
    cluster: Cluster, infra: Infra, prefix: str
) -> None:
    """Two of three masters down: no majority to promote their replicas, and the third master
    answers CLUSTERDOWN. The worker must wait it out, not crash, and count every vote once."""
    # the screen off: a batch's first Redis call is then the read of the generations
    env = cluster_env(infra, cluster, prefix, PODIUM_RATING_SCREEN_ENABLED="false")
    votes = mixed_votes(10**6, seed=31, arenas=ARENAS)
    async with (replicas(env, prefix, "ingest-1", "rating-1") as ps,
                cluster_client(cluster) as redis):
        poster = ThroughBothReplicas([ps["ingest-1"].url])
        killed: list[int] = []
        try:
            await poster.post_all(votes, 4, 100)
            await counted_exactly(redis, prefix, poster.accepted)  # the slots map is read
            posting = asyncio.create_task(poster.post_all(votes, 30, 100))
            # the survivor: the master of the first key a batch reads (the key space's
            # generations), so the worker meets its CLUSTERDOWN, not only refused connections
            assert isinstance(redis, RedisCluster)
            survivor = int(redis.get_node_from_key(KeyLayout(prefix).generations()).port)
            masters = cluster.redis_masters()
            for node in [m for m in masters if cluster.redis_ports[m - 1] != survivor]:
                cluster.kill_redis_node(node)
                killed.append(node)
            await wait_until(lambda: _is(cluster_state(survivor), "fail"), DEADLINE_S,
                             "CLUSTERDOWN on the surviving master")
            log = ps["rating-1"].log_path

            async def worker_met_clusterdown() -> bool:
                text = log.read_text()
                return "The cluster is down" in text or "ClusterDownError" in text

            await wait_until(worker_met_clusterdown, DEADLINE_S, "the worker meeting CLUSTERDOWN")
            for node in killed:
                cluster.restart_redis_node(node)
            killed.clear()
            await posting
            await counted_exactly(redis, prefix, poster.accepted)
            async with httpx.AsyncClient(timeout=10) as http:
                for p in ps.values():
                    assert (await http.get(f"{p.url}/readyz")).status_code == 200
        finally:
            for node in killed:
                cluster.restart_redis_node(node)
            await poster.aclose()


async def _is(state: Any, want: str) -> bool:
    return bool(await state == want)
