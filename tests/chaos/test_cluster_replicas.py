"""Replicas on the production topology (issue #17): three KRaft brokers and a Redis Cluster (the
session's ``cluster``), the services as processes on ``redis+cluster://``, several of a kind.

- A rank-change subscriber on api replica 1, which is stopped (SIGTERM) or crashes (SIGKILL)
  mid-stream, resumes on api replica 2 by Last-Event-ID: together its two streams hold every
  change of the topic from its start, in order, none lost, none repeated.
- An ingest replica restarts while a client posts through both (retrying a batch answered 503,
  or not answered, on the other): every vote answered 202 is counted exactly once.
- A broker SIGKILLed while a client posts through both ingest replicas with an ack timeout (1 s)
  shorter than the failover, each retry sent to the other replica: batches answered 503 stay in
  flight on the replica that sent them, and their retries on the other one are not produced
  again (the vote ids are claimed in Redis): every vote answered 202 is counted exactly once
  (before, 5,573 stored for 5,499 expected on one board).
- The whole Redis Cluster answering CLUSTERDOWN for a while (a slot without a master, full
  coverage required) as votes stream in: the worker waits and retries its batch, and every
  accepted vote is counted exactly once (before, CLUSTERDOWN crashed its agent for
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
from aiokafka.admin import AIOKafkaAdminClient

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
DOWN_SLOT = 1  # the slot taken away to put the cluster down


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
    answered, is posted again (same vote ids) to the next replica until one answers 202: each
    retry goes to the replica after the one that failed it, whatever other batches do."""

    def __init__(self, urls: list[str]) -> None:
        self._clients = [httpx.AsyncClient(base_url=u, timeout=30) for u in urls]
        self._turn = 0
        self.accepted: list[dict[str, Any]] = []
        self.retried: Counter[str] = Counter()

    async def post(self, votes: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        turn = self._turn
        self._turn += 1
        while True:
            client = self._clients[turn % len(self._clients)]
            turn += 1
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
                         await read_topic(cluster.kafka_bootstrap, topic)]
        got = changes_of(first) + changes_of(moved)
        # up to where api-2's stream was when it had reached the topic's end (the worker's
        # timers may publish more afterwards: style refits)
        last = offset(got[-1][0])
        assert [i for i, _ in got] == [f"0:{n}" for n in range(start, last + 1)]
        assert [c for _, c in got] == topic_changes[start:last + 1]
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


async def test_retries_on_the_other_replica_through_a_broker_failover_count_once(
    cluster: Cluster, infra: Infra, prefix: str
) -> None:
    env = cluster_env(infra, cluster, prefix, PODIUM_INGEST_KAFKA_ACK_TIMEOUT_S="1")
    votes = mixed_votes(10**6, seed=37, arenas=ARENAS)
    topic = Topics(prefix + ".").votes
    async with (replicas(env, prefix, "ingest-1", "ingest-2", "rating-1") as ps,
                cluster_client(cluster) as redis):
        poster = ThroughBothReplicas([ps["ingest-1"].url, ps["ingest-2"].url])
        try:
            await poster.post_all(votes, 4, 100)
            lanes = [asyncio.create_task(poster.post_all(votes, 40, 100)) for _ in range(2)]
            victim = await votes_leader(cluster.kafka_bootstrap, topic)
            await asyncio.to_thread(cluster.kill_broker, victim)
            await asyncio.gather(*lanes)
            await asyncio.to_thread(cluster.restart_broker, victim)
            assert poster.retried["503"], "the failover was never seen by the client"
            assert len(poster.accepted) == 8_400
            await counted_exactly(redis, prefix, poster.accepted)
        finally:
            await poster.aclose()


async def votes_leader(bootstrap: str, topic: str) -> int:
    """The broker leading the most partitions of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    leaders = [int(p["leader"]) for p in described["partitions"]]
    return max(set(leaders), key=leaders.count)


@contextlib.asynccontextmanager
async def cluster_down(cluster: Cluster, slot: int) -> AsyncIterator[None]:
    """The whole cluster down while inside: ``slot`` is taken from its master with
    cluster-require-full-coverage on, so every node answers CLUSTERDOWN (as in a minority
    partition, or from a master restarting, but at once and for every key); given back after
    (keys stay where they are meanwhile)."""
    nodes = [aioredis.Redis(port=p) for p in cluster.redis_ports]
    owner: aioredis.Redis | None = None
    try:
        for start, end, master, *_ in await nodes[0].execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                owner = nodes[cluster.redis_ports.index(int(master[1]))]
        assert owner is not None, f"no master serves slot {slot}"
        for node in nodes:
            await node.config_set("cluster-require-full-coverage", "yes")
        for node in nodes:  # each node's own map: the change is not gossiped
            await node.execute_command("CLUSTER DELSLOTS", slot)
        yield
    finally:
        if owner is not None:  # the others learn the claim of an unassigned slot by gossip
            await owner.execute_command("CLUSTER ADDSLOTS", slot)
        for node in nodes:
            await node.config_set("cluster-require-full-coverage", "no")
        for node in nodes:
            await node.aclose()


async def cluster_states(cluster: Cluster) -> set[str]:
    states = set()
    for port in cluster.redis_ports:
        client = aioredis.Redis(port=port)
        try:
            states.add(str((await client.execute_command("CLUSTER INFO"))["cluster_state"]))
        finally:
            await client.aclose()
    return states


async def test_votes_count_exactly_through_a_redis_cluster_outage(
    cluster: Cluster, infra: Infra, prefix: str
) -> None:
    """Every node of the cluster answers CLUSTERDOWN for a while as votes stream in: the
    worker must wait it out and retry, not crash (its agent died for good before), and count
    every accepted vote once; ingest answers 503 meanwhile, never 500."""
    env = cluster_env(infra, cluster, prefix)
    votes = mixed_votes(10**6, seed=31, arenas=ARENAS)
    async with (replicas(env, prefix, "ingest-1", "rating-1") as ps,
                cluster_client(cluster) as redis):
        poster = ThroughBothReplicas([ps["ingest-1"].url])
        try:
            await poster.post_all(votes, 4, 100)
            await counted_exactly(redis, prefix, poster.accepted)
            log = ps["rating-1"].log_path

            async def worker_met_clusterdown() -> bool:  # on several batches or retries
                return log.read_text().count("The cluster is down") >= 3

            async with cluster_down(cluster, slot=DOWN_SLOT):
                await wait_until(lambda: _is_only(cluster_states(cluster), "fail"), DEADLINE_S,
                                 "every node in state fail")
                posting = asyncio.create_task(poster.post_all(votes, 30, 100))
                await wait_until(worker_met_clusterdown, DEADLINE_S,
                                 "the worker meeting CLUSTERDOWN")
            await wait_until(lambda: _is_only(cluster_states(cluster), "ok"), DEADLINE_S,
                             "every node ok again")
            await posting
            await counted_exactly(redis, prefix, poster.accepted)
            async with httpx.AsyncClient(timeout=10) as http:
                for p in ps.values():
                    assert (await http.get(f"{p.url}/readyz")).status_code == 200
            assert "Crashed" not in log.read_text(), "the rating agent crashed"
        finally:
            await poster.aclose()


async def _is_only(states: Any, want: str) -> bool:
    return bool(await states == {want})
