"""Two ingest processes on one Kafka and one Redis (issue #17): a batch answered 503 on replica 1
while its send is still in flight there (the broker down longer than the ack timeout) and then
retried on replica 2 is not produced by replica 2 too. Replica 2 answers 503 (the vote_id is
claimed by replica 1, not settled) until replica 1's send is delivered, then 202 with the
votes as duplicates: every vote is in the topic once. Before, replica 2 knew nothing of replica
1's in-flight sends and produced the votes again (both copies delivered, counted twice).
The claims' TTL is 2 s here: replica 1 renews them while its sends are in flight, so replica 2
still answers 503 after the first claim's expiry.

Both of ingest's paths: a single vote (the fast path: the claim is in the rate-limit call) and
a batch larger than one trip (one claim call after the rate limits)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis

from shared.events import decode_vote_record
from shared.keys import KeyLayout, dedupe_shard
from tests.support.infra import ROOT, Infra, free_port, kafka_broker, kafka_script, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess
from tests.support.votes import post_batch
from tests.support.wait import wait_until

BATCH = 300  # more than acceptor.ONE_TRIP_MAX_VOTES: the two-call path


def vote(vote_id: str) -> dict[str, Any]:
    return {"vote_id": vote_id, "arena": "text", "model_a": "a", "model_b": "b", "winner": "tie"}


async def test_a_retry_on_the_other_replica_while_a_send_is_in_flight_is_not_produced_twice(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    port = free_port()
    run_dir = ROOT / ".run" / f"test-claims-{prefix}"
    single = [vote("single")]
    batch = [vote(f"batch-{i}") for i in range(BATCH)]
    with kafka_broker(run_dir, port, free_port()) as broker_env:
        bootstrap = f"127.0.0.1:{port}"
        env = service_env(infra, prefix, PODIUM_KAFKA_BOOTSTRAP=bootstrap,
                          PODIUM_INGEST_KAFKA_ACK_TIMEOUT_S="1",
                          PODIUM_INGEST_IN_FLIGHT_TTL_S="2")
        first = await ServiceProcess("ingest", env, log_name=f"ingest-1-{prefix}").start()
        second = await ServiceProcess("ingest", env, log_name=f"ingest-2-{prefix}").start()
        try:
            async with (httpx.AsyncClient(base_url=first.url, timeout=30) as one,
                        httpx.AsyncClient(base_url=second.url, timeout=30) as two):

                async def accepted(client: httpx.AsyncClient, votes: list[dict[str, Any]]
                                   ) -> httpx.Response | None:
                    r = await send(client, votes)
                    return r if r.status_code == 202 else None

                await wait_until(lambda: accepted(one, [vote("warm-1")]), 30, "replica 1 up")
                await wait_until(lambda: accepted(two, [vote("warm-2")]), 30, "replica 2 up")
                kafka_script(broker_env, "stop")
                during: list[httpx.Response] = []  # replica 2's answers while the broker is down
                for votes in (single, batch):
                    r = await send(one, votes)  # the ack times out: the send stays in flight
                    assert r.status_code == 503, r.text
                    during.append(await send(two, votes))  # the client retries on replica 2
                claimed = await claim_expiry(redis_client, prefix, "single")
                assert claimed is not None, "no claim of the single vote"

                async def renewed_past_the_first_expiry() -> bool:
                    expiry = await claim_expiry(redis_client, prefix, "single")
                    return (expiry or 0) > time.time() * 1000 > claimed

                await wait_until(renewed_past_the_first_expiry, 10, "the claim renewed")
                during.append(await send(two, single))
                kafka_script(broker_env, "start")
                after: list[tuple[list[str], httpx.Response, httpx.Response]] = []
                for votes in (single, batch):

                    async def on_two(votes: list[dict[str, Any]] = votes
                                     ) -> httpx.Response | None:
                        return await accepted(two, votes)

                    async def on_one(votes: list[dict[str, Any]] = votes
                                     ) -> httpx.Response | None:
                        return await accepted(one, votes)

                    r = await wait_until(on_two, 60, "the retry on replica 2 accepted")
                    # and on replica 1, once its own send is settled
                    again = await wait_until(on_one, 60, "the retry on replica 1 accepted")
                    after.append((sorted(v["vote_id"] for v in votes), r, again))
        finally:
            first.stop()
            second.stop()
        values = await read_topic(bootstrap, prefix + ".podium.votes")
    copies = Counter(v.vote_id for value in values for v in decode_vote_record(value))
    twice = sorted(vote_id for vote_id, n in copies.items() if n > 1)
    assert not twice, f"{len(twice)} votes produced twice: {twice[:3]}"
    assert copies == Counter({v["vote_id"]: 1 for v in [vote("warm-1"), vote("warm-2"),
                                                         *single, *batch]})
    for r in during:  # not settled on replica 1 yet: retry later, here or there
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "another ingest instance" in r.json()["detail"], r.text
    for ids, second_answer, first_answer in after:  # settled: duplicates of the first copy
        assert sorted(second_answer.json()["duplicates"]) == ids, second_answer.text
        assert sorted(first_answer.json()["duplicates"]) == ids, first_answer.text


async def claim_expiry(redis: aioredis.Redis, prefix: str, vote_id: str) -> int | None:
    """When the claim of ``vote_id`` expires (unix ms), if it is claimed."""
    value = await redis.hget(KeyLayout(prefix).in_flight_ids(dedupe_shard(vote_id)), vote_id)
    return None if value is None else int(value.split()[1])


async def send(client: httpx.AsyncClient, votes: list[dict[str, Any]]) -> httpx.Response:
    """One vote as the single-vote POST (the fast path), several as a batch."""
    if len(votes) == 1:
        return await client.post("/v1/votes", json=votes[0])
    return await post_batch(client, votes)
