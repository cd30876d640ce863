"""The client against a real ingest: it rides out a service that is not up yet, and gives up
(without producing anything twice) while Kafka is unreachable."""

from __future__ import annotations

import asyncio

import httpx

from shared.client import PodiumClient, PodiumUnavailable, RetryPolicy
from shared.events import Vote
from shared.settings import ClientSettings
from tests.support.infra import ADMIN_TOKEN, Infra, free_port, service_env
from tests.support.metrics import scrape
from tests.support.processes import ServiceProcess
from tests.support.wait import wait_until

VOTES = [Vote(vote_id=f"c{i}", arena="text", model_a="m-a", model_b="m-b", winner="tie")
         for i in range(5)]


async def test_votes_sent_before_ingest_is_up_are_accepted_once_it_is(
    infra: Infra, prefix: str
) -> None:
    ingest = ServiceProcess("ingest", service_env(infra, prefix), log_name=f"ingest-{prefix}")
    policy = RetryPolicy(attempts=200, base_s=0.05, max_s=0.3)
    backoffs: list[float] = []

    async def backoff(seconds: float) -> None:
        backoffs.append(seconds)
        await asyncio.sleep(seconds)

    async def refused_twice() -> bool:
        return len(backoffs) >= 2

    async with PodiumClient(ClientSettings(ingest_url=ingest.url), retry=policy,
                            sleep=backoff) as client:
        sending = asyncio.create_task(client.post_votes(VOTES))
        await wait_until(refused_twice, 30, "the client refused and retrying")
        assert not sending.done()  # connection refused: still retrying
        try:
            await ingest.start()
            receipt = await asyncio.wait_for(sending, 30)
            assert receipt.accepted == [v.vote_id for v in VOTES] and receipt.duplicates == []
            again = await client.post_votes(VOTES)  # a retry after success: not counted twice
            assert again.duplicates == [v.vote_id for v in VOTES]
            metrics = await scrape(ingest.url)
            assert metrics["podium_ingest_votes_accepted_total"] == len(VOTES)
            assert metrics["podium_ingest_votes_duplicate_total"] == len(VOTES)
        finally:
            assert ingest.stop() == 0


async def test_the_client_gives_up_while_kafka_stays_unreachable(
    infra: Infra, prefix: str
) -> None:
    dead_kafka = f"127.0.0.1:{free_port()}"
    env = service_env(infra, prefix, PODIUM_KAFKA_BOOTSTRAP=dead_kafka)
    ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start("/healthz")
    try:
        async with httpx.AsyncClient(base_url=ingest.url) as http:
            ready = await http.get("/readyz")
            # not ready: Kafka is down (and so the registry and keys cannot be replayed yet)
            assert ready.status_code == 503
            assert ready.json() == {"kafka": False, "redis": True, "restoring": True}
        policy = RetryPolicy(attempts=3, base_s=0.05, max_s=0.1)
        async with PodiumClient(ClientSettings(ingest_url=ingest.url), retry=policy) as client:
            try:
                await client.post_votes(VOTES)
            except PodiumUnavailable as exc:
                assert "503" in str(exc) and "3 attempts" in str(exc)
            else:
                raise AssertionError("votes were accepted without Kafka")
        metrics = await scrape(ingest.url)
        assert metrics['podium_ingest_votes_rejected_total{reason="kafka_unavailable"}'] == 15
        assert metrics.get("podium_ingest_votes_accepted_total", 0) == 0
        # an admin write of the registry has its record in Kafka first: 503, nothing written
        async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
            admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
            r = await http.post("/v1/admin/models", headers=admin, json={"id": "nova-1"})
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            r = await http.patch("/v1/admin/models/nova-1", headers=admin, json={"preview": True})
            assert r.status_code == 404, r.text  # the refused registration left nothing
    finally:
        assert ingest.stop() == 0
