"""The production topology's infrastructure (issue #17): three KRaft brokers and a Redis Cluster
of 3 masters + 3 replicas, started by the project's scripts (deploy/stack.sh up --cluster-infra).
Topics get three copies with two in sync; acks=all writes survive a SIGKILLed broker, which
rejoins after a restart; a SIGKILLed Redis master's replica takes over; `down` leaves nothing."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis.asyncio.cluster import ClusterNode, RedisCluster

from shared.kafka import ensure_topics
from shared.keys import KeyLayout
from shared.topics import Topics
from tests.support.cluster import KAFKA_NODES, REDIS_NODES, Cluster, alive
from tests.support.counts import expected_counts, wait_for_counts
from tests.support.infra import Infra, service_env
from tests.support.kafka import read_topic
from tests.support.processes import running_stack
from tests.support.votes import mixed_votes, post_all
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 4
# One key per master: {a}, {b}, {c} hash to slots 15495, 3300, 7365 (one per third of 16384).
SLOT_TAGS = ("{a}", "{b}", "{c}")
FAILOVER_DEADLINE_S = 20  # node timeout 2 s + election; generous for a loaded 2-core machine


async def describe(bootstrap: str, topic: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(partitions with replicas and ISR, topic configs) as the brokers report them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        [configs] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, None)])
        entries = configs.to_object()["resources"][0]["config_entries"]
        return described["partitions"], {e["config_names"]: e["config_value"] for e in entries}
    finally:
        await admin.close()


async def described(cluster: Cluster, topic: str
                    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``describe`` once every broker knows the new topic (metadata spreads in a moment)."""
    async def known() -> tuple[list[dict[str, Any]], dict[str, str]] | None:
        for port in cluster.kafka_ports:
            partitions, _ = await describe(f"127.0.0.1:{port}", topic)
            if len(partitions) < PARTITIONS:
                return None
        return await describe(cluster.kafka_bootstrap, topic)

    return await wait_until(known, 15, f"every broker knowing {topic}")


async def live_brokers(bootstrap: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(b["node_id"] for b in (await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


async def test_topics_get_three_copies_two_in_sync(cluster: Cluster, prefix: str) -> None:
    topic = f"{prefix}.votes"
    factor = await ensure_topics(cluster.kafka_bootstrap, {topic: PARTITIONS})
    partitions, configs = await described(cluster, topic)
    assert factor == 3
    assert len(partitions) == PARTITIONS
    for p in partitions:
        assert sorted(p["replicas"]) == [1, 2, 3], p
        assert sorted(p["isr"]) == [1, 2, 3], p
    assert configs["min.insync.replicas"] == "2"
    assert configs["retention.ms"] == "-1"


async def test_the_services_topics_are_replicated_on_three_brokers(
    cluster: Cluster, infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    """ingest and the worker on the three brokers (Redis: the session's single one, until the
    services speak Redis Cluster): every topic they create has 3 copies, 2 in sync, faust's
    own leader topic too; votes flow through."""
    env = service_env(infra, prefix, PODIUM_KAFKA_BOOTSTRAP=cluster.kafka_bootstrap)
    votes = list(mixed_votes(1000, seed=17))
    async with running_stack(env, prefix, names=("ingest", "rating")) as services:
        async with httpx.AsyncClient(base_url=services["ingest"].url, timeout=30) as client:
            await post_all(client, votes, batch=250)
        await wait_for_counts(redis_client, KeyLayout(prefix), expected_counts(votes), 60)
    topics = Topics(prefix + ".")
    names = [topics.votes, topics.votes_dlq, topics.rank_changes, topics.scores,
             f"{prefix}-rating-__assignor-__leader"]
    for name in names:
        partitions, configs = await describe(cluster.kafka_bootstrap, name)
        assert partitions, f"{name} was not created"
        assert all(len(p["replicas"]) == 3 for p in partitions), (name, partitions)
        assert configs["min.insync.replicas"] == "2", name


async def test_acks_all_writes_survive_a_killed_broker_which_rejoins(
    cluster: Cluster, prefix: str
) -> None:
    topic = f"{prefix}.votes"
    await ensure_topics(cluster.kafka_bootstrap, {topic: PARTITIONS})
    partitions, _ = await described(cluster, topic)
    victim = next(p["leader"] for p in partitions if p["partition"] == 0)
    producer = AIOKafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all",
                                enable_idempotence=True, request_timeout_ms=30_000)
    await producer.start()
    sent: list[bytes] = []

    async def produce(first: int, count: int) -> None:
        values = [f"vote-{i}".encode() for i in range(first, first + count)]
        futures = [await producer.send(topic, v, partition=i % PARTITIONS)
                   for i, v in enumerate(values)]
        await asyncio.gather(*futures)  # every one acknowledged by all in-sync replicas
        sent.extend(values)

    try:
        await produce(0, 2000)
        cluster.kill_broker(victim)  # the leader of partition 0, mid-stream
        t0 = time.monotonic()
        await produce(2000, 2000)
        print(f"2,000 acks=all writes with broker {victim} dead: {time.monotonic() - t0:.1f}s")
        survivors = sorted(set(range(1, KAFKA_NODES + 1)) - {victim})
        assert await live_brokers(cluster.kafka_bootstrap) == survivors
    finally:
        await producer.stop()
    assert sorted(await read_topic(cluster.kafka_bootstrap, topic)) == sorted(sent)

    cluster.restart_broker(victim)

    async def back_in_sync() -> bool:
        parts, _ = await describe(cluster.kafka_bootstrap, topic)
        return all(sorted(p["isr"]) == [1, 2, 3] for p in parts)

    await wait_until(back_in_sync, 60, f"broker {victim} back in every ISR")
    assert await live_brokers(cluster.kafka_bootstrap) == [1, 2, 3]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


async def cluster_state(port: int) -> str:
    client = aioredis.Redis(port=port)
    try:
        info = await client.execute_command("CLUSTER INFO")  # parsed by redis-py
        return str(info["cluster_state"])
    finally:
        await client.aclose()


async def test_redis_cluster_is_ok_and_a_killed_masters_replica_takes_over(
    cluster: Cluster, prefix: str
) -> None:
    assert [await cluster_state(p) for p in cluster.redis_ports] == ["ok"] * REDIS_NODES
    assert len(cluster.redis_masters()) == 3
    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster.redis_seeds])
    await client.initialize()
    keys = [f"{prefix}:{tag}:count" for tag in SLOT_TAGS]
    masters_of_keys = {client.get_node_from_key(k).port for k in keys}
    assert len(masters_of_keys) == 3, "the keys should cover all three masters"
    try:
        for key in keys:
            await client.incr(key)
        # every master has its replica acknowledge the writes (WAIT), so a crash keeps them
        for key in keys:
            node = client.get_node_from_key(key)
            assert await client.execute_command("WAIT", 1, 5000, target_nodes=node) == 1

        victim = cluster.kill_redis_master()
        t0 = time.monotonic()

        async def writes_work_everywhere() -> bool:
            for key in keys:
                await client.incr(key)
            return True

        await wait_until(writes_work_everywhere, FAILOVER_DEADLINE_S,
                         f"writes on every slot after killing Redis node {victim}", 0.2)
        print(f"writes on every slot again {time.monotonic() - t0:.1f}s after the kill")
        assert victim not in cluster.redis_masters()
        assert len(cluster.redis_masters()) == 3  # the replica was promoted
        # nothing acknowledged before the kill was lost: 1 before, then >= 1 after
        values = [int(await client.get(k)) for k in keys]
        assert all(v >= 2 for v in values), values
    finally:
        await client.aclose()

    cluster.restart_redis_node(victim)  # rejoins as a replica of its old replica
    assert victim not in cluster.redis_masters()
    assert [await cluster_state(p) for p in cluster.redis_ports] == ["ok"] * REDIS_NODES


def test_down_stops_every_node(cluster: Cluster) -> None:
    """(A later test asking for ``cluster`` gets it started again from the same data dirs.)"""
    pids = cluster.pids()
    assert len(pids) == KAFKA_NODES + REDIS_NODES, pids
    cluster.stop()
    still = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not still, f"left running after deploy/stack.sh down: {still}"
    assert not list(cluster.run_dir.glob("*.pid"))
    leftover = subprocess.run(["pgrep", "-f", str(cluster.run_dir)], capture_output=True,
                              text=True, check=False).stdout.split()
    assert not leftover, f"processes still naming {cluster.run_dir}: {leftover}"
    ports = [*cluster.kafka_ports, *cluster.controller_ports, *cluster.redis_ports]
    assert not [p for p in ports if port_open(p)], "a port still accepts connections"
