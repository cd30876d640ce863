"""Failover times on the production topology, with the deploy scripts' own failure detection
(Redis node timeout 3 s, broker session timeout 9 s unless given):

    .venv/bin/python bench/failover_bench.py [--rounds 3] [--redis-node-timeout-ms 3000]
        [--broker-session-timeout-ms 9000]

broker     an acks=all producer sends to a partition led by broker N, one record at a time; N is
           SIGKILLed: seconds until the next acknowledgement (a new leader elected from the ISR),
           then N is restarted for the next round
redis      a cluster client writes (INCR) a key on master M every 50 ms; M is SIGKILLed: seconds
           until a write on its slots succeeds again (its replica promoted, the client's slot
           map re-read), then M is restarted (it rejoins as a replica)
api        an SSE client of the rank-change stream on api replica 1, which is SIGKILLed (and,
           in another round, SIGTERMed): seconds until the client, reconnecting at once to
           replica 2 with its Last-Event-ID, has its ``ready`` there and then the next change
           (EventSource itself waits the stream's ``retry: 1000`` ms before reconnecting)

The cluster is started by deploy/stack.sh up --cluster-infra on ports of its own and stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from harness import ROOT
from redis.asyncio.cluster import RedisCluster

from services.common.redis_client import REDIS_UNAVAILABLE, connect
from shared.kafka import ensure_topics
from tests.support.cluster import Cluster
from tests.support.infra import Infra, service_env, unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.sse_swarm import SseSubscriber, publish, rank_change

POLL_S = 0.05


class DeployedCluster(Cluster):
    """The Cluster of the tests with the deploy scripts' failure detection (or the given)."""

    redis_node_timeout_ms = 3000
    broker_session_timeout_ms = 9000

    @property
    def env(self) -> dict[str, str]:
        return {**super().env,
                "PODIUM_REDIS_CLUSTER_NODE_TIMEOUT_MS": str(self.redis_node_timeout_ms),
                "PODIUM_KAFKA_BROKER_SESSION_TIMEOUT_MS": str(self.broker_session_timeout_ms)}


async def until(probe: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Seconds until ``probe`` is true (polled every POLL_S; its exceptions count as false)."""
    started = time.monotonic()
    while True:
        try:
            if await probe():
                return time.monotonic() - started
        except Exception:  # the point is to wait through the failure
            pass
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{what}: not within {timeout}s")
        await asyncio.sleep(POLL_S)


async def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return int(next(p["leader"] for p in described["partitions"]
                        if p["partition"] == partition))
    finally:
        await admin.close()


async def broker_failover(cluster: Cluster) -> float:
    topic = unique_prefix() + ".failover"
    await ensure_topics(cluster.kafka_bootstrap, {topic: 3})
    victim = await until_value(lambda: leader_of(cluster.kafka_bootstrap, topic, 0), 30)
    producer = AIOKafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all",
                                enable_idempotence=True, request_timeout_ms=30_000,
                                retry_backoff_ms=50)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before", partition=0)
        killed = time.monotonic()
        await asyncio.to_thread(cluster.kill_broker, victim)
        await producer.send_and_wait(topic, b"after", partition=0)  # retried until a leader
        took = time.monotonic() - killed
    finally:
        await producer.stop()
    await asyncio.to_thread(cluster.restart_broker, victim)
    return took


async def until_value(make: Callable[[], Awaitable[int]], timeout: float) -> int:
    found: list[int] = []

    async def probe() -> bool:
        found.append(await make())
        return True

    await until(probe, timeout, "a value")
    return found[-1]


async def redis_failover(cluster: Cluster) -> float:
    client = connect(cluster.redis_url, retries=1)
    assert isinstance(client, RedisCluster)
    try:
        await client.initialize()
        masters = cluster.redis_masters()
        victim = masters[0]
        port = cluster.redis_ports[victim - 1]
        key = next(k for k in (f"failover:{{{i}}}" for i in range(10_000))
                   if getattr(client.get_node_from_key(k), "port", None) == port)
        await client.incr(key)
        killed = time.monotonic()
        await asyncio.to_thread(cluster.kill_redis_node, victim)

        async def written() -> bool:
            try:
                await client.incr(key)
            except REDIS_UNAVAILABLE:
                return False
            return True

        await until(written, 60, "a write on the dead master's slots")
        took = time.monotonic() - killed
    finally:
        await client.aclose()
    await asyncio.to_thread(cluster.restart_redis_node, victim)
    return took


async def api_failover(cluster: Cluster, sig: signal.Signals) -> tuple[float, float]:
    prefix = unique_prefix()
    topic = f"{prefix}.podium.rank-changes"
    env = service_env(Infra(cluster.kafka_bootstrap, cluster.redis_url), prefix,
                      PODIUM_LOG_LEVEL="WARNING")
    apis = [ServiceProcess("api", env, log_name=f"failover-api-{n}") for n in (1, 2)]
    try:
        for api in apis:
            await api.start()
        first = await subscribed(apis[0], None)
        await publish(cluster.kafka_bootstrap, topic, [rank_change() for _ in range(5)])
        await until(lambda: done(len(first.ids()) == 5), 30, "5 changes on replica 1")
        assert apis[0].proc is not None
        killed = time.monotonic()
        apis[0].proc.send_signal(sig)  # not waiting for its exit: the client does not either
        await until(lambda: done(first.ended), 30, "the stream's end")
        moved = await subscribed(apis[1], first.last_event_id)
        ready = time.monotonic() - killed
        await publish(cluster.kafka_bootstrap, topic, [rank_change()])
        await until(lambda: done(len(moved.ids()) == 1), 30, "the next change on replica 2")
        return ready, time.monotonic() - killed
    finally:
        for api in apis:
            api.stop()


async def subscribed(api: ServiceProcess, last_event_id: str | None) -> SseSubscriber:
    """A subscriber, reading in the background, once it has its ``ready``."""
    sub = SseSubscriber("127.0.0.1", api.port or 0, last_event_id=last_event_id)
    reader, writer = await sub.open()
    assert sub.status == 200, sub.status
    reading = asyncio.create_task(sub.run(reader, writer))
    _tasks.add(reading)
    await until(lambda: done(bool(sub.ids("ready"))), 30, "ready")
    return sub


_tasks: set[asyncio.Task[None]] = set()


async def done(value: bool) -> bool:
    return value


def summary(times: list[float]) -> str:
    return (f"median {statistics.median(times):5.2f} s  (" +
            ", ".join(f"{t:.2f}" for t in times) + ")")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-node-timeout-ms", type=int, default=3000)
    parser.add_argument("--broker-session-timeout-ms", type=int, default=9000)
    args = parser.parse_args()
    # the producer's and consumers' complaints while a broker is down are the point: not shown
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    run_dir = ROOT / ".run" / "bench" / f"failover-{os.getpid()}"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    cluster = DeployedCluster.on_free_ports(run_dir)
    assert isinstance(cluster, DeployedCluster)
    cluster.redis_node_timeout_ms = args.redis_node_timeout_ms
    cluster.broker_session_timeout_ms = args.broker_session_timeout_ms
    results: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)
        print(f"  {name}: {seconds:.2f} s", flush=True)

    try:
        await asyncio.to_thread(cluster.start)
        for _ in range(args.rounds):
            note("broker SIGKILL -> acks=all acks resume", await broker_failover(cluster))
            note("Redis master SIGKILL -> writes on its slots", await redis_failover(cluster))
            for sig in (signal.SIGKILL, signal.SIGTERM):
                ready, change = await api_failover(cluster, sig)
                note(f"api {sig.name} -> SSE ready on replica 2", ready)
                note(f"api {sig.name} -> next change on replica 2", change)
    finally:
        for task in _tasks:
            task.cancel()
        await asyncio.to_thread(cluster.stop)
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)
    print(f"failover on the cluster topology, {args.rounds} rounds (Redis node timeout "
          f"{args.redis_node_timeout_ms} ms, broker session timeout "
          f"{args.broker_session_timeout_ms} ms)")
    for name, times in results.items():
        print(f"  {name:<44} {summary(times)}")


if __name__ == "__main__":
    asyncio.run(main())
