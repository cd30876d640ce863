"""The headline chaos test of issue #17, on the production topology (the session's ``cluster``:
three KRaft brokers, a Redis Cluster of 3 masters + 3 replicas; the services as processes on
``redis+cluster://``: 2 ingest, 2 rating workers, 2 api).

Votes of four arenas are posted through both ingest replicas in turn by a client that retries a
batch answered 503, or not answered, with the same vote ids, each retry on the replica after the
one that failed it (a retry on the other replica while the first's send is in flight answers 503
until that send settles: ingest claims vote ids in Redis before producing them). While they
flow, one at a time, each followed by its recovery: a rating worker is SIGKILLed (the other
takes its partitions over), a Redis master is SIGKILLed (its replica is promoted; the node is
restarted), a Kafka broker is SIGKILLed (the leader of an arena's partition) and later
restarted, an ingest replica and an api replica are restarted (SIGTERM, then started again).
Then every vote answered 202 is counted exactly once on every board it touches (overall,
categories, languages), in Redis and on both api replicas' listing, and every surviving process
answers /readyz 200.

``PODIUM_CHAOS_VOTES`` sets how many votes at least (the issue's full size is 200,000; the
default fits ``make test`` on a 2-core machine). The votes are paced over ``POSTING_S`` so that
posting goes on through every failure; it goes on past that number until the last failure has
been recovered from."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio.cluster import RedisCluster

from services.common.redis_client import RedisClient
from shared.generations import active_layout
from shared.keys import KeyLayout
from shared.topics import Topics
from tests.chaos.test_cluster_replicas import (
    ThroughBothReplicas,
    cluster_client,
    cluster_env,
    replicas,
)
from tests.support.cluster import KAFKA_NODES, Cluster
from tests.support.counts import board_counts, expected_counts, wait_for_counts
from tests.support.infra import Infra
from tests.support.metrics import scrape
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes
from tests.support.wait import wait_until

VOTES = int(os.environ.get("PODIUM_CHAOS_VOTES", "40000"))
POSTING_S = 100  # the votes are spread over this long (more if the failures take longer)
BATCH = 250
LANES = 2  # concurrent batches in flight, each through either replica in turn
# one arena on each of the votes topic's 4 partitions (keyed by arena: 3, 2, 0, 1), so each
# of the two workers rates some and the survivor of a kill takes the other's over
ARENAS = ("text", "vision", "search", "copilot")
RECOVERY_S = 90  # from a failure to every arena counting again and every survivor ready
SETTLE_S = 180 + VOTES // 1000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480 + VOTES // 250)]
Votes = list[dict[str, Any]]


class PacedStream:
    """``LANES`` concurrent posters of ``BATCH``-vote batches through ``poster``, together at
    about ``rate`` votes per second, until stopped."""

    def __init__(self, poster: ThroughBothReplicas, votes: Iterator[dict[str, Any]],
                 rate: float) -> None:
        self.poster = poster
        self._votes = votes
        self._rate = rate
        self._taken = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = 0.0

    @property
    def accepted(self) -> int:
        return len(self.poster.accepted)

    def start(self) -> None:
        self._started = asyncio.get_running_loop().time()
        self._tasks = [asyncio.create_task(self._lane()) for _ in range(LANES)]

    async def _lane(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            chunk = [next(self._votes) for _ in range(BATCH)]
            self._taken += len(chunk)
            await self.poster.post(chunk)
            due = self._started + self._taken / self._rate  # when the next batch is due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, due - loop.time()))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def failed(self) -> BaseException | None:
        """A lane's failure (a batch never accepted), as soon as there is one."""
        for task in self._tasks:
            if task.done() and task.exception() is not None:
                return task.exception()
        return None


@dataclass
class Event:
    """One failure: votes accepted from its start to its recovery, and how long that took."""

    name: str
    accepted_from: int = 0
    accepted_to: int = 0
    seconds: float = 0.0


@dataclass
class Chaos:
    """The running topology and what the test saw of it."""

    cluster: Cluster
    prefix: str
    ps: dict[str, ServiceProcess]
    redis: RedisClient
    stream: PacedStream
    http: httpx.AsyncClient
    events: list[Event] = field(default_factory=list)

    @property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.prefix)

    async def arena_totals(self) -> dict[str, int]:
        """Votes counted on each arena's overall board now (0 for an arena not yet seen)."""
        keys = await active_layout(self.redis, self.keys)
        return {arena: (await board_counts(self.redis, keys, arena, "overall")).total()
                for arena in ARENAS}

    async def every_arena_counting(self, what: str) -> None:
        """Every arena's overall count grows past where it is now (so each arena's partition
        has a worker and Redis takes its writes)."""
        before = await wait_until(self._totals_or_none, RECOVERY_S, "arena totals")

        async def grown() -> bool:
            self._check_stream()
            now = await self.arena_totals()
            return all(now[a] > before[a] for a in ARENAS)

        await wait_until(grown, RECOVERY_S, f"every arena counting ({what})", 0.25)

    async def _totals_or_none(self) -> dict[str, int] | None:
        return await self.arena_totals()

    async def every_survivor_ready(self, what: str) -> None:
        for label, process in self.ps.items():
            async def ready(p: ServiceProcess = process) -> bool:
                return (await self.http.get(f"{p.url}/readyz")).status_code == 200

            await wait_until(ready, RECOVERY_S, f"{label} /readyz 200 ({what})", 0.25)

    def _check_stream(self) -> None:
        failure = self.stream.failed()
        if failure is not None:
            raise AssertionError(f"the client gave up on a batch: {failure!r}")

    async def reached(self, share: float) -> None:
        """Wait until ``share`` of ``VOTES`` is accepted (the next failure's turn)."""
        async def there() -> bool:
            self._check_stream()
            return self.stream.accepted >= share * VOTES

        await wait_until(there, POSTING_S + RECOVERY_S, f"{share:.0%} of the votes accepted")

    async def run(self, name: str, failure: Callable[[], Awaitable[None]]) -> None:
        """One failure and its recovery (``failure`` waits for its own part of it), then every
        arena counting and every survivor ready again."""
        event = Event(name, accepted_from=self.stream.accepted)
        started = time.monotonic()
        await failure()
        await self.every_arena_counting(name)
        await self.every_survivor_ready(name)
        event.seconds = time.monotonic() - started
        event.accepted_to = self.stream.accepted
        self.events.append(event)

    # the failures, one at a time

    async def kill_a_worker(self) -> None:
        async def counting(label: str) -> bool:
            return (await scrape(self.ps[label].url)).get("podium_rating_votes_total", 0) > 0

        for label in ("rating-1", "rating-2"):
            await wait_until(partial(counting, label), RECOVERY_S, f"{label} counting")
        self.ps.pop("rating-1").kill()  # rating-2 must take its partitions over

    async def kill_a_redis_master(self) -> None:
        victim = await self._master_of_most_arenas()
        await asyncio.to_thread(self.cluster.kill_redis_node, victim)
        await self.every_arena_counting("on the promoted replica")
        masters = await asyncio.to_thread(self.cluster.redis_masters)
        assert victim not in masters and len(masters) == 3, masters
        await asyncio.to_thread(self.cluster.restart_redis_node, victim)

    async def _master_of_most_arenas(self) -> int:
        assert isinstance(self.redis, RedisCluster)
        keys = await active_layout(self.redis, self.keys)
        nodes = [self.redis.get_node_from_key(keys.fence(a)) for a in ARENAS]
        ports = [int(n.port) for n in nodes if n is not None]
        port = max(set(ports), key=ports.count)
        return self.cluster.redis_ports.index(port) + 1

    async def kill_a_broker(self) -> None:
        topic = Topics(self.prefix + ".").votes
        victim = await leader_of_partitions(self.cluster.kafka_bootstrap, topic)
        await asyncio.to_thread(self.cluster.kill_broker, victim)
        await self.every_arena_counting(f"broker {victim} dead")
        await asyncio.to_thread(self.cluster.restart_broker, victim)

        async def back_in_every_isr() -> bool:
            return await in_sync_replicas(self.cluster.kafka_bootstrap, topic) == {KAFKA_NODES}

        await wait_until(back_in_every_isr, RECOVERY_S, f"broker {victim} back in every ISR", 0.5)

    async def restart(self, label: str) -> None:
        """SIGTERM (a clean exit) and start again; the other replica serves meanwhile."""
        process = self.ps[label]
        code = await asyncio.to_thread(process.stop)
        assert code == 0, f"{label} exited {code}"
        other = self.ps[label[:-1] + "2"]
        assert (await self.http.get(f"{other.url}/readyz")).status_code == 200
        await process.start()


async def leader_of_partitions(bootstrap: str, topic: str) -> int:
    """The broker leading the most partitions of ``topic`` (arenas' votes)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    leaders = [int(p["leader"]) for p in described["partitions"]]
    return max(set(leaders), key=leaders.count)


async def in_sync_replicas(bootstrap: str, topic: str) -> set[int]:
    """The sizes of the ISRs of ``topic``'s partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {len(p["isr"]) for p in described["partitions"]}


async def boards_listed(http: httpx.AsyncClient, api: ServiceProcess) -> dict[str, int]:
    listed = (await http.get(f"{api.url}/v1/leaderboards")).json()["boards"]
    return {b["board"]: b["votes"] for b in listed}


async def test_every_accepted_vote_counts_once_through_one_failure_after_another(
    cluster: Cluster, infra: Infra, prefix: str
) -> None:
    env = cluster_env(infra, cluster, prefix, PODIUM_RATING_SESSION_TIMEOUT_S="6")
    labels = ("ingest-1", "ingest-2", "rating-1", "rating-2", "api-1", "api-2")
    async with (replicas(env, prefix, *labels) as ps, cluster_client(cluster) as redis,
                httpx.AsyncClient(timeout=10) as http):
        poster = ThroughBothReplicas([ps["ingest-1"].url, ps["ingest-2"].url])
        stream = PacedStream(poster, mixed_votes(10**7, seed=53, arenas=ARENAS),
                             rate=VOTES / POSTING_S)
        chaos = Chaos(cluster, prefix, ps, redis, stream, http)
        failures: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("a rating worker SIGKILLed", chaos.kill_a_worker),
            ("a Redis master SIGKILLed", chaos.kill_a_redis_master),
            ("a Kafka broker SIGKILLed and restarted", chaos.kill_a_broker),
            ("ingest-1 restarted", lambda: chaos.restart("ingest-1")),
            ("api-1 restarted", lambda: chaos.restart("api-1")),
        ]
        started = time.monotonic()
        stream.start()
        try:
            for n, (name, failure) in enumerate(failures, start=1):
                await chaos.reached(n / (len(failures) + 2))
                await chaos.run(name, failure)
            await chaos.reached(1.0)
        finally:
            await stream.stop()
            await poster.aclose()
        posted_s = time.monotonic() - started
        accepted = poster.accepted
        assert len({v["vote_id"] for v in accepted}) == len(accepted) >= VOTES
        want = expected_counts(accepted)
        assert sorted({b.split("/")[0] for b in want}) == sorted(ARENAS)
        assert len(want) > len(ARENAS), "boards beyond overall (categories, languages)"
        await wait_for_counts(redis, KeyLayout(prefix), want, SETTLE_S)
        settled_s = time.monotonic() - started
        totals = {board: counts.total() for board, counts in want.items()}
        for label in ("api-1", "api-2"):
            async def listed(api: ServiceProcess = ps[label]) -> bool:
                return await boards_listed(http, api) == totals

            await wait_until(listed, 60, f"{label} listing every board at its count", 0.5)
        await chaos.every_survivor_ready("at the end")
        for event in chaos.events:  # each failure came while votes were being accepted
            assert event.accepted_to > event.accepted_from, event
        assert sum(poster.retried.values()) > 0, "no failure was ever seen by the client"
        print(f"\n{len(accepted)} votes ({len(want)} boards) accepted in {posted_s:.0f}s, "
              f"counted exactly after {settled_s:.0f}s; client retries {dict(poster.retried)}")
        for event in chaos.events:
            print(f"  {event.name}: recovered in {event.seconds:.1f}s, "
                  f"{event.accepted_to - event.accepted_from} votes accepted meanwhile")
