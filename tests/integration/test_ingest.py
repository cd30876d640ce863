"""ingest as a process against the real broker: what is acknowledged is in Kafka, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from services.common.registry import ModelRegistry
from shared.events import ScoreEvent, decode_vote_record
from shared.keys import KeyLayout
from tests.support.infra import ADMIN_TOKEN, Infra, service_env
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

    produced = [vote for v in await read_topic(infra.kafka_bootstrap, prefix + ".podium.votes")
                for vote in decode_vote_record(v)]
    assert sorted(v.vote_id for v in produced) == sorted(["v1", *(f"v{i}" for i in range(20, 30))])
    assert all(v.received_at is not None for v in produced)


async def test_openapi_documents_the_vote_endpoints(ingest: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        spec = (await client.get("/openapi.json")).json()
        assert {"/v1/votes", "/v1/votes/batch"} <= set(spec["paths"])
        assert (await client.get("/docs")).status_code == 200


async def test_registry_admin_unknown_models_and_scores(infra: Infra, prefix: str) -> None:
    env = service_env(infra, prefix, PODIUM_INGEST_AUTO_REGISTER_MODELS="false")
    service = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            r = await client.post("/v1/votes", json=vote(1))
            assert r.status_code == 422 and "unknown model(s) a, b" in r.text
            entry = {"id": "a", "organization": "Acme", "country": "US", "license": "open",
                     "release_date": "2025-01-02"}
            assert (await client.post("/v1/admin/models", json=entry)).status_code == 401
            bad_token = {"authorization": "Bearer nope"}
            r = await client.post("/v1/admin/models", json=entry, headers=bad_token)
            assert r.status_code == 401
            r = await client.post("/v1/admin/models", json=entry, headers=admin)
            assert r.status_code == 201 and r.json()["display_name"] == "a"
            r = await client.post("/v1/admin/models", json=entry, headers=admin)
            assert r.status_code == 409
            r = await client.post("/v1/admin/models", json={**entry, "id": "b", "country": "usa"},
                                  headers=admin)
            assert r.status_code == 422 and "country" in r.text
            r = await client.post("/v1/admin/models", json={"id": "b"}, headers=admin)
            assert r.status_code == 201
            r = await client.patch("/v1/admin/models/a", json={"preview": True,
                                                              "display_name": "A One"},
                                   headers=admin)
            assert r.status_code == 200
            assert r.json() == {**entry, "display_name": "A One", "preview": True,
                                "deprecated": False, "deprecated_at": None,
                                "public_since": None, "public_votes": None}
            r = await client.patch("/v1/admin/models/ghost", json={"preview": True},
                                   headers=admin)
            assert r.status_code == 404
            assert (await client.post("/v1/votes", json=vote(1))).status_code == 202

            score = {"model": "a", "benchmark": "gpqa", "score": 71.5, "source": "paper"}
            assert (await client.post("/v1/scores", json=score)).status_code == 202
            r = await client.post("/v1/scores/batch", json=[score, {**score, "model": "c"}])
            assert r.status_code == 422 and "unknown model(s) c" in r.text
            r = await client.post("/v1/scores", json={**score, "score": "NaN"})
            assert r.status_code == 422
            r = await client.post("/v1/votes", json=vote(2, arena="bench"))
            assert r.status_code == 422 and "reserved" in r.text
    finally:
        assert service.stop() == 0

    produced = [ScoreEvent.model_validate_json(v) for v in
                await read_topic(infra.kafka_bootstrap, prefix + ".podium.scores")]
    assert [(e.model, e.score) for e in produced] == [("a", 71.5)]
    assert produced[0].timestamp is not None


async def test_auto_registration_registers_unknown_models(ingest: ServiceProcess,
                                                          infra: Infra, prefix: str) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        assert (await client.post("/v1/votes", json=vote(1, model_a="new-x"))).status_code == 202
    redis_client = aioredis.Redis.from_url(infra.redis_url)
    try:
        known = await ModelRegistry(redis_client, KeyLayout(prefix)).all()
    finally:
        await redis_client.aclose()
    assert known["new-x"].display_name == "new-x" and set(known) == {"new-x", "b"}


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
    produced = [vote.vote_id
                for v in await read_topic(infra.kafka_bootstrap, prefix + ".podium.votes")
                for vote in decode_vote_record(v)]
    assert sorted(produced) == sorted(f"v{i}" for i in range(80))
