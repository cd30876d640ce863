"""The broker stops and restarts while votes stream in: every vote answered 202 is counted once;
votes answered 503 and retried with the same vote_id are counted once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from shared.events import decode_vote_record
from shared.keys import KeyLayout
from tests.support.counts import expected_counts, stored_counts, wait_for_counts
from tests.support.infra import ROOT, Infra, free_port, kafka_broker, kafka_script, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes, post_batch
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

BATCHES = 20
BATCH = 200


async def post_until_accepted(client: httpx.AsyncClient, votes: list[dict[str, Any]],
                              refused: Counter[str]) -> None:
    """A well-behaved client: on 503 (or no answer) retry the same votes after Retry-After."""
    deadline = asyncio.get_running_loop().time() + 180
    while True:
        try:
            r = await post_batch(client, votes)
        except httpx.TransportError:
            refused["no answer"] += 1
        else:
            if r.status_code == 202:
                return
            assert r.status_code == 503, r.text
            refused["503"] += 1
            assert int(r.headers["retry-after"]) >= 1
        assert asyncio.get_running_loop().time() < deadline, "votes never accepted"
        await asyncio.sleep(0.5)  # the client's back-off before a retry


async def test_votes_survive_a_broker_restart_exactly_once(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    port = free_port()
    with kafka_broker(ROOT / ".run" / f"test-broker-{prefix}", port, free_port()) as broker:
        bootstrap = f"127.0.0.1:{port}"
        env = service_env(infra, prefix, PODIUM_KAFKA_BOOTSTRAP=bootstrap,
                          PODIUM_INGEST_KAFKA_ACK_TIMEOUT_S="2",
                          PODIUM_RATING_SESSION_TIMEOUT_S="6")
        ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
        rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}").start()
        acknowledged: list[dict[str, Any]] = []
        refused: Counter[str] = Counter()
        try:
            votes = mixed_votes(10**6, seed=21)
            async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
                async def post_batches(n: int) -> None:
                    for _ in range(n):
                        chunk = [next(votes) for _ in range(BATCH)]
                        await post_until_accepted(client, chunk, refused)
                        acknowledged.extend(chunk)

                await post_batches(BATCHES)

                async def counting() -> bool:
                    counts = await stored_counts(redis_client, KeyLayout(prefix))
                    return sum(c.total() for c in counts.values()) > 0

                await wait_until(counting, 60, "the worker counting")

                async def restart_broker() -> None:
                    await asyncio.to_thread(kafka_script, broker, "stop")

                    async def refusing() -> bool:
                        return refused["503"] > 0

                    await wait_until(refusing, 60, "ingest answering 503 while the broker is down")
                    await asyncio.to_thread(kafka_script, broker, "start")

                chaos = asyncio.create_task(restart_broker())
                while not chaos.done():  # votes keep coming while the broker stops and starts
                    await post_batches(1)
                await chaos
                await post_batches(BATCHES)
            assert refused["503"] > 0
            await wait_for_counts(redis_client, KeyLayout(prefix), expected_counts(acknowledged),
                                  120)
        finally:
            code = rating.stop()
            ingest.stop()
        assert code == 0
        produced = Counter(vote.vote_id
                           for v in await read_topic(bootstrap, prefix + ".podium.votes")
                           for vote in decode_vote_record(v))
    assert produced == Counter(v["vote_id"] for v in acknowledged), "each vote in Kafka once"
