"""1,000 poison messages produced straight to the votes topic between good votes: every one in
the dead-letter topic with its reason and position, the worker alive, every good vote counted."""

from __future__ import annotations

import random
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from shared.keys import KeyLayout
from tests.support.counts import expected_counts, wait_for_counts
from tests.support.infra import Infra, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes, post_batch
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

ROUNDS = 20
POISON_PER_ROUND = 50


def poison(rng: random.Random, good: dict[str, Any]) -> bytes | None:
    kind = rng.randrange(6)
    if kind == 0:
        return None  # a tombstone
    if kind == 1:
        return b"\xff\xfe not json"
    if kind == 2:
        return b'{"vote_id": 1}'
    if kind == 3:
        return orjson.dumps({**good, "model_b": good["model_a"]})
    if kind == 4:
        return orjson.dumps({**good, "winner": "both"})
    return orjson.dumps([good, 42])  # a batch record with something that is not a vote


async def test_poison_messages_are_dead_lettered_and_good_votes_counted(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    env = service_env(infra, prefix)
    topic = prefix + ".podium.votes"
    rng = random.Random(prefix)
    ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
    rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}").start()
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    good: list[dict[str, Any]] = []
    positions: set[tuple[int, int]] = set()
    try:
        votes = mixed_votes(ROUNDS * 500, seed=5)
        async with httpx.AsyncClient(base_url=ingest.url, timeout=60) as client:
            for _ in range(ROUNDS):
                chunk = [next(votes) for _ in range(500)]
                r = await post_batch(client, chunk)
                assert r.status_code == 202, r.text
                good.extend(chunk)
                for _ in range(POISON_PER_ROUND):
                    arena = rng.choice(["text", "vision"]).encode()
                    meta = await producer.send_and_wait(topic, poison(rng, chunk[0]), key=arena)
                    positions.add((meta.partition, meta.offset))
        await wait_for_counts(redis_client, KeyLayout(prefix), expected_counts(good), 120)

        async def all_dead_lettered() -> list[dict[str, Any]] | None:
            values = await read_topic(infra.kafka_bootstrap, topic + ".dlq")
            return [orjson.loads(v) for v in values] if len(values) >= len(positions) else None

        dead = await wait_until(all_dead_lettered, 60, "every poison message dead-lettered")
        assert len(dead) == ROUNDS * POISON_PER_ROUND
        assert {(d["partition"], d["offset"]) for d in dead} == positions
        assert all(d["topic"] == topic and d["reason"] for d in dead)
        assert rating.proc is not None and rating.proc.poll() is None, "the worker is alive"
    finally:
        await producer.stop()
        code = rating.stop()
        ingest.stop()
    assert code == 0
