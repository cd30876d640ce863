"""The rating worker is stopped (SIGTERM) while Redis is down and a batch is being retried: it
gives the batch a bounded grace, then gives it up without committing its offsets and exits 0
(before, it retried for ever and was SIGKILLed). A worker started once Redis is back counts
every vote exactly once."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import Vote, encode_vote_record
from shared.keys import KeyLayout
from tests.support.counts import expected_counts, wait_for_counts
from tests.support.infra import ROOT, Infra, free_port, redis_script, redis_server, service_env
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

GRACE_S = 2.0
STOP_BOUND_S = GRACE_S + 15  # the grace, then closing Kafka clients; far below the harness's 30
PER_RECORD = 20


async def produce(bootstrap: str, topic: str, votes: list[dict[str, Any]]
                  ) -> dict[int, int]:
    """The votes as ingest writes them (records of a few votes, keyed by arena); returns the
    first offset written to each partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    first: dict[int, int] = {}
    try:
        by_arena: dict[str, list[Vote]] = defaultdict(list)
        for raw in votes:
            vote = Vote.model_validate(raw)
            by_arena[vote.arena].append(vote)
        for arena, arena_votes in sorted(by_arena.items()):
            for start in range(0, len(arena_votes), PER_RECORD):
                record = encode_vote_record(arena_votes[start:start + PER_RECORD])
                meta = await producer.send_and_wait(topic, record, key=arena.encode())
                first.setdefault(meta.partition, meta.offset)
    finally:
        await producer.stop()
    return first


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """partition -> the group's committed offset (the next one to read)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets: dict[TopicPartition, Any] = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def test_a_worker_stopped_while_redis_is_down_exits_cleanly_and_commits_no_lost_batch(
    infra: Infra, prefix: str
) -> None:
    port = free_port()
    topic = f"{prefix}.podium.votes"
    with redis_server(ROOT / ".run" / f"test-redis-{prefix}", port) as redis_env:
        url = f"redis://127.0.0.1:{port}/0"
        env = service_env(Infra(infra.kafka_bootstrap, url), prefix,
                          PODIUM_RATING_STOP_GRACE_S=str(GRACE_S))
        setup = aioredis.Redis.from_url(url)
        await setup.config_set("appendfsync", "always")  # what was counted survives the stop
        await setup.aclose()
        votes = mixed_votes(10**6, seed=47)
        before = [next(votes) for _ in range(200)]
        during = [next(votes) for _ in range(200)]
        base = KeyLayout(prefix)
        rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}").start()
        try:
            await produce(infra.kafka_bootstrap, topic, before)
            client = aioredis.Redis.from_url(url)
            await wait_for_counts(client, base, expected_counts(before), 60)
            await client.aclose()

            redis_script(redis_env, "stop")
            abandoned = await produce(infra.kafka_bootstrap, topic, during)

            async def retrying() -> bool:
                return "retrying batch in" in rating.log_path.read_text()

            await wait_until(retrying, 60, "the worker retrying a batch with Redis down")
            started = time.monotonic()
            code = rating.stop(timeout=STOP_BOUND_S)
            took = time.monotonic() - started
        finally:
            rating.stop()
        log = rating.log_path.read_text()
        assert code == 0, f"the worker did not stop cleanly within {STOP_BOUND_S}s: {code}"
        assert "gave up the batch in flight" in log
        assert took < STOP_BOUND_S
        done = await committed(infra.kafka_bootstrap, f"{prefix}-rating", topic)
        for partition, offset in abandoned.items():
            assert done.get(partition, 0) <= offset, (
                f"partition {partition}: committed {done.get(partition)} past the given up "
                f"batch (from offset {offset})")

        redis_script(redis_env, "start")
        rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}-2").start()
        client = aioredis.Redis.from_url(url)
        try:
            await wait_for_counts(client, base, expected_counts(before + during), 90)
        finally:
            await client.aclose()
            second = rating.stop()
        assert second == 0
