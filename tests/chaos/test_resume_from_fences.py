"""The rating worker's position lives with its output (issue #17): it resumes each votes
partition after what Redis holds of it, not at Kafka's committed offset. A Redis that lost its
last writes, or everything, is caught up from the log by itself; several workers share the
partitions and one dying or joining loses nothing and counts nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.keys import KeyLayout, text
from tests.chaos.test_redis_restart import post_until_accepted
from tests.support.counts import (
    assert_same_standings,
    expected_counts,
    standings,
    stored_counts,
    wait_for_counts,
)
from tests.support.infra import ROOT, Infra, free_port, redis_script, redis_server, service_env
from tests.support.metrics import scrape
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes, post_all
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

BATCH = 200
Votes = list[dict[str, Any]]


async def counted(client: aioredis.Redis, base: KeyLayout) -> int:
    return sum(c.total() for b, c in (await stored_counts(client, base)).items()
               if b.endswith("/overall"))


async def fences(client: aioredis.Redis, base: KeyLayout, arenas: tuple[str, ...],
                 topic: str) -> dict[int, int]:
    """partition -> the highest fence of any arena in it (what the worker applied)."""
    out: dict[int, int] = {}
    for arena in arenas:
        for field, offset in (await client.hgetall(base.fence(arena))).items():
            name, _, number = text(field).rpartition("/")
            if name == topic:
                out[int(number)] = max(out.get(int(number), -1), int(offset))
    return out


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()
            if isinstance(tp, TopicPartition) and tp.topic == topic}


def latest_incr_aof(data_dir: Path) -> Path:
    """The AOF file Redis 7 appends to (multi-part AOF: the highest ``.incr.aof``)."""
    files = sorted((data_dir / "appendonlydir").glob("*.incr.aof"),
                   key=lambda p: int(p.name.split(".")[-3]))
    assert files, f"no incremental AOF in {data_dir}"
    return files[-1]


class Poster:
    """Posts votes in batches until stopped, keeping what ingest acknowledged."""

    def __init__(self, http: httpx.AsyncClient, seed: int, arenas: tuple[str, ...]) -> None:
        self.acknowledged: Votes = []
        self._votes = mixed_votes(10**7, seed=seed, arenas=arenas)
        self._http = http
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            chunk = [next(self._votes) for _ in range(BATCH)]
            await post_until_accepted(self._http, chunk)
            self.acknowledged.extend(chunk)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def test_a_sigkilled_redis_that_lost_its_last_writes_is_caught_up_exactly(
    infra: Infra, prefix: str
) -> None:
    """Redis (AOF everysec) is SIGKILLed while votes flow and comes back without the writes of
    its last seconds (the AOF cut back to a moment before the kill, as a machine crash leaves
    it), whose offsets Kafka had already committed. The worker notices its fences went back,
    re-reads from them, and every board's counts are exact."""
    port = free_port()
    run_dir = ROOT / ".run" / f"test-redis-{prefix}"
    arenas = ("text", "vision")
    with redis_server(run_dir, port) as redis_env:
        url = f"redis://127.0.0.1:{port}/0"
        client = aioredis.Redis.from_url(url)
        await client.config_set("auto-aof-rewrite-percentage", 0)  # one incremental AOF
        env = service_env(Infra(infra.kafka_bootstrap, url), prefix,
                          PODIUM_RATING_SESSION_TIMEOUT_S="6")
        base = KeyLayout(prefix)
        topic = f"{prefix}.podium.votes"
        ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
        rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}").start()
        try:
            async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
                poster = Poster(http, 41, arenas)
                poster.start()
                await wait_until(lambda: _more(client, base, 2000), 120, "the worker counting")
                aof = latest_incr_aof(run_dir / "redis-data")
                cut = aof.stat().st_size  # Redis will come back as it was here
                applied = await fences(client, base, arenas, topic)

                async def committed_past_the_cut() -> bool:
                    done = await committed(infra.kafka_bootstrap, f"{prefix}-rating", topic)
                    return all(done.get(p, -1) > f + 1 for p, f in applied.items())

                await wait_until(committed_past_the_cut, 60, "Kafka committing past the cut")
                os.kill(int((run_dir / "redis.pid").read_text()), signal.SIGKILL)
                await wait_until(lambda: _gone(port), 10, "the killed Redis gone", 0.01)
                with aof.open("r+b") as f:
                    f.truncate(cut)
                redis_script(redis_env, "start")
                await client.aclose()
                client = aioredis.Redis.from_url(url)
                lost_some = await counted(client, base)
                await wait_until(lambda: _more(client, base, lost_some + 2000), 120,
                                 "counting after the restart")
                await poster.stop()
            await wait_for_counts(client, base, expected_counts(poster.acknowledged), 120)
            metrics = await scrape(rating.url)
            assert metrics.get('podium_rating_resumes_total{reason="state_lost"}', 0) >= 1
        finally:
            code = rating.stop()
            ingest.stop()
            await client.aclose()
        assert code == 0


async def test_a_wiped_redis_comes_back_by_itself_with_the_same_standings(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    """FLUSHALL while the worker runs: /readyz says it is catching up (503, with progress),
    then every board is back with the same counts and scores (within 1e-9), and /readyz 200."""
    env = service_env(infra, prefix, PODIUM_RATING_BATCH_MAX="500")
    base = KeyLayout(prefix)
    ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
    rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}").start()
    try:
        votes = list(mixed_votes(40_000, seed=43, arenas=("text", "vision", "code")))
        async with httpx.AsyncClient(base_url=ingest.url, timeout=60) as http:
            await post_all(http, votes, batch=2000)
        want = expected_counts(votes)
        await wait_for_counts(redis_client, base, want, 120)

        async def settled() -> bool:  # every board's standings of every vote
            docs = await standings(redis_client, base)
            return len(docs) == len(want) and all(
                doc["votes"] == want[b].total() for b, doc in docs.items())

        await wait_until(settled, 60, "standings of every vote")
        before = await standings(redis_client, base)
        async with httpx.AsyncClient(base_url=rating.url, timeout=10) as http:
            await redis_client.flushall()
            seen: list[dict[str, Any]] = []

            async def catching_up() -> bool:
                r = await http.get("/readyz")
                if r.status_code == 503 and "catching_up" in r.json():
                    seen.append(r.json()["catching_up"])
                    return True
                return False

            await wait_until(catching_up, 30, "/readyz 503 catching up", interval=0.02)
            progress = next(iter(seen[0].values()))
            assert progress["total"] > 0 and progress["done"] <= progress["total"]
            await wait_for_counts(redis_client, base, want, 180)
            await wait_until(settled, 60, "standings back")
            assert_same_standings(before, await standings(redis_client, base))

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await wait_until(ready, 60, "/readyz 200 after the catch-up")
        metrics = await scrape(rating.url)
        assert metrics.get('podium_rating_resumes_total{reason="state_lost"}', 0) >= 1
        assert metrics["podium_rating_catch_up_remaining"] == 0
    finally:
        code = rating.stop()
        ingest.stop()
    assert code == 0


async def test_rating_workers_share_the_partitions_and_survive_a_kill_and_a_join(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    """Two workers in one group on a 4-partition votes topic; one is SIGKILLed mid-stream (the
    other takes its partitions), then a third joins: every board's counts exact."""
    env = service_env(infra, prefix, PODIUM_VOTES_PARTITIONS="4",
                      PODIUM_RATING_SESSION_TIMEOUT_S="6")
    base = KeyLayout(prefix)
    arenas = ("text", "vision", "code", "webdev", "search", "copilot")
    ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
    workers = [await ServiceProcess("rating", env, log_name=f"rating-{prefix}-{n}").start()
               for n in (1, 2)]
    try:
        async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
            poster = Poster(http, 47, arenas)
            poster.start()

            async def both_have_partitions() -> bool:
                for w in workers:
                    m = await scrape(w.url)
                    if m.get("podium_rating_votes_total", 0) == 0:
                        return False
                return True

            await wait_until(both_have_partitions, 120, "both workers counting")
            workers[0].kill()
            now = await counted(redis_client, base)
            await wait_until(lambda: _more(redis_client, base, now + 5000), 120,
                             "the survivor counting the killed worker's arenas too")
            workers.append(await ServiceProcess("rating", env,
                                                log_name=f"rating-{prefix}-3").start())

            async def third_counts() -> bool:
                return (await scrape(workers[2].url)).get("podium_rating_votes_total", 0) > 0

            await wait_until(third_counts, 120, "the third worker counting")
            await poster.stop()
        await wait_for_counts(redis_client, base, expected_counts(poster.acknowledged), 180)
    finally:
        codes = [w.stop() for w in workers[1:]]
        workers[0].kill()
        ingest.stop()
    assert codes == [0, 0]


async def _more(client: aioredis.Redis, base: KeyLayout, n: int) -> bool:
    return await counted(client, base) > n


async def _gone(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False
