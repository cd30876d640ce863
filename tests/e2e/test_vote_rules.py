"""What ingest accepts decides what counts: ingest and rating as processes on the real broker
and Redis. A vote counts once on each of its boards, whatever its categories or copies say."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from shared.keys import KeyLayout, count_field
from tests.support.counts import wait_for_counts
from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack


def vote(vote_id: str, **extra: Any) -> dict[str, Any]:
    return {"vote_id": vote_id, "arena": "text", "model_a": "a", "model_b": "b",
            "winner": "model_a", **extra}


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix, names=("ingest", "rating")) as services:
        yield services


A_WINS = count_field("a", "b", "model_a")
B_WINS = count_field("a", "b", "model_b")


async def test_reserved_view_names_are_refused_and_a_repeated_category_counts_once(
    stack: dict[str, ServiceProcess], infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    async with httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as ingest:
        for reserved in ("overall", "overall+style", "coding+style", "lang:en"):
            r = await ingest.post("/v1/votes", json=vote("r1", categories=[reserved]))
            assert r.status_code == 422 and f"'{reserved}' is reserved" in r.text, (
                reserved, r.text)
            r = await ingest.post("/v1/votes/batch",
                                  json=[vote("r2"), vote("r3", categories=["x", reserved])])
            assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", 1]
            assert reserved in r.text
        style = {"model_a": {"tokens": 10}, "model_b": {"tokens": 20}}
        r = await ingest.post("/v1/votes", json=vote("c1", categories=["coding", "coding"],
                                                     style=style))
        assert r.status_code == 202, r.text
        r = await ingest.post("/v1/votes/batch", json=[
            vote("c2", categories=["coding", "hard", "coding", "hard"], winner="model_b")])
        assert r.status_code == 202, r.text

    # a record an older ingest wrote, with a reserved and a repeated category: counted once
    # on each of its boards, not dead-lettered, the worker still running
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        old = vote("old1", categories=["overall", "coding", "coding"], style=style)
        await producer.send_and_wait(prefix + ".podium.votes", orjson.dumps([old]),
                                     key=b"text")
    finally:
        await producer.stop()

    want = {
        "text/overall": Counter({A_WINS: 2, B_WINS: 1}),
        "text/coding": Counter({A_WINS: 2, B_WINS: 1}),
        "text/hard": Counter({B_WINS: 1}),
    }
    await wait_for_counts(redis_client, KeyLayout(prefix), want, timeout=60)
    assert stack["rating"].proc is not None and stack["rating"].proc.poll() is None

