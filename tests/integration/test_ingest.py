"""ingest as a process against the real broker: what is acknowledged is in Kafka, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from shared.events import Vote
from tests.support.infra import Infra, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess


def vote(i: int, **extra: object) -> dict[str, object]:
    return {"vote_id": f"v{i}", "arena": "text", "model_a": "a", "model_b": "b",
            "winner": "model_a", **extra}


@pytest.fixture
async def ingest(infra: Infra, prefix: str) -> AsyncIterator[ServiceProcess]:
    env = service_env(infra, prefix, PODIUM_INGEST_MAX_BODY_BYTES="65536",
                      PODIUM_INGEST_MAX_BATCH="100")
    service = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
    try:
        yield service
    finally:
        assert service.stop() == 0, "ingest shut down cleanly on SIGTERM"


async def test_accepted_votes_are_in_kafka_once_and_invalid_ones_are_not(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        r = await client.post("/v1/votes", json=vote(1))
        assert r.status_code == 202 and r.json() == {"accepted": ["v1"], "duplicates": []}
        r = await client.post("/v1/votes", json=vote(1))  # a client retry
        assert r.status_code == 202 and r.json()["duplicates"] == ["v1"]

        bad = [
            (vote(2, winner="model_c"), "winner"),
            (vote(3, model_b="a"), "different"),
            ({"vote_id": "v4", "arena": "text"}, "model_a"),
            (vote(5, turns="many"), "turns"),
        ]
        for body, needle in bad:
            r = await client.post("/v1/votes", json=body)
            assert r.status_code == 422, body
            assert needle in r.text

        r = await client.post("/v1/votes/batch", json=[vote(10), vote(11, winner="?")])
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", 1]
        lines = b"\n".join(orjson.dumps(vote(i, winner="tie")) for i in range(20, 30))
        r = await client.post("/v1/votes/batch", content=lines,
                              headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 202 and len(r.json()["accepted"]) == 10
        r = await client.post("/v1/votes/batch", json=[vote(i) for i in range(200, 301)])
        assert r.status_code == 422 and "limit is 100" in r.text
        r = await client.post("/v1/votes/batch", content=b"[" + b" " * 70_000 + b"]",
                              headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.text
        r = await client.post("/v1/votes", content=b"{oops", headers={"content-type":
                                                                       "application/json"})
        assert r.status_code == 422

    produced = [Vote.model_validate_json(v) for v in
                await read_topic(infra.kafka_bootstrap, prefix + ".podium.votes")]
    assert sorted(v.vote_id for v in produced) == sorted(["v1", *(f"v{i}" for i in range(20, 30))])
    assert all(v.received_at is not None for v in produced)


async def test_openapi_documents_the_vote_endpoints(ingest: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        spec = (await client.get("/openapi.json")).json()
        assert {"/v1/votes", "/v1/votes/batch"} <= set(spec["paths"])
        assert (await client.get("/docs")).status_code == 200


async def test_concurrent_retries_of_the_same_votes_are_produced_once(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        singles = [client.post("/v1/votes", json=vote(1)) for _ in range(20)]
        batches = [client.post("/v1/votes/batch", json=[vote(i) for i in range(k, k + 50)])
                   for k in (0, 10, 20, 0, 30, 10)]
        answers = await asyncio.gather(*singles, *batches)
    assert all(r.status_code == 202 for r in answers), [r.text for r in answers]
    assert sum(r.json()["duplicates"] == [] for r in answers[:20]) <= 1
    produced = [Vote.model_validate_json(v).vote_id for v in
                await read_topic(infra.kafka_bootstrap, prefix + ".podium.votes")]
    assert sorted(produced) == sorted(f"v{i}" for i in range(80))
