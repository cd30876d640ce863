"""ingest's group commit and its fast path, as a process against the real broker and Redis.

Concurrent requests are accepted together (one group: one key lookup, one rate-limit call, one
Kafka send), yet every request keeps its own answer; single votes with a client key take the
fast path in front of FastAPI, with the same answers as the documented route.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from services.ingest.client_keys import sign
from shared.events import decode_vote_record
from tests.support.infra import ADMIN_TOKEN, DEV_API_KEY, Infra, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def vote(i: int | str, **extra: object) -> dict[str, object]:
    return {"vote_id": f"g{i}", "arena": "text", "model_a": "a", "model_b": "b",
            "winner": "model_a", **extra}


@pytest.fixture
async def ingest(infra: Infra, prefix: str, request: pytest.FixtureRequest
                 ) -> AsyncIterator[ServiceProcess]:
    extra: dict[str, str] = getattr(request, "param", {})
    env = service_env(infra, prefix, PODIUM_INGEST_REQUIRE_AUTH="true", **extra)
    service = await ServiceProcess("ingest", env, log_name=f"ingest-groups-{prefix}").start()
    try:
        yield service
    finally:
        assert service.stop() == 0, "ingest shut down cleanly on SIGTERM"


async def produced_ids(infra: Infra, prefix: str) -> list[str]:
    return [v.vote_id for record in await read_topic(infra.kafka_bootstrap,
                                                     prefix + ".podium.votes")
            for v in decode_vote_record(record)]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_concurrent_single_votes_each_get_their_own_answer_and_count_once(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    key = {"X-API-Key": DEV_API_KEY}
    limits = httpx.Limits(max_connections=100)
    timeout = httpx.Timeout(60, pool=None)  # the client queues its own requests
    async with httpx.AsyncClient(base_url=ingest.url, timeout=timeout, limits=limits) as client:
        # 300 distinct votes, each posted twice at once (key, then bearer), and wrong or
        # missing keys mixed in
        posts = [client.post("/v1/votes", json=vote(i), headers=key) for i in range(300)]
        posts += [client.post("/v1/votes", json=vote(i),
                              headers={"Authorization": f"Bearer {DEV_API_KEY}"})
                  for i in range(300)]
        posts += [client.post("/v1/votes", json=vote(f"x{i}"), headers={"X-API-Key": "nope"})
                  for i in range(30)]
        posts += [client.post("/v1/votes", json=vote(f"y{i}")) for i in range(30)]
        answers = await asyncio.gather(*posts)
        metrics = (await client.get("/metrics")).text
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {202: 600, 401: 60}, statuses
    for r in answers[600:]:
        assert r.headers["www-authenticate"] == "Bearer" and "key" in r.json()["detail"]
        assert r.headers["x-request-id"]
    by_id: dict[str, list[list[str]]] = {}
    for r in answers[:600]:
        body = r.json()
        assert len(body["accepted"]) == 1
        by_id.setdefault(body["accepted"][0], []).append(body["duplicates"])
    # of the two posts of each vote, exactly one produced it and the other saw a duplicate
    assert all(sorted(map(len, answers_of)) == [0, 1] for answers_of in by_id.values())
    assert sorted(await produced_ids(infra, prefix)) == sorted(f"g{i}" for i in range(300))
    assert metric(metrics, "podium_ingest_votes_accepted_total") == 300
    assert metric(metrics, "podium_ingest_votes_duplicate_total") == 300
    assert metric(metrics,
                  'podium_ingest_votes_rejected_total{reason="unauthorized"}') == 60


@pytest.mark.parametrize("ingest", [{"PODIUM_INGEST_VOTER_BURST": "5",
                                     "PODIUM_INGEST_VOTER_VOTES_PER_S": "0.01",
                                     "PODIUM_INGEST_AUTO_REGISTER_MODELS": "false"}],
                         indirect=True)
async def test_limits_and_unknown_models_refuse_only_the_requests_concerned(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    key = {"X-API-Key": DEV_API_KEY}
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        for model in ("a", "b", "c"):
            r = await client.post("/v1/admin/models", json={"id": model}, headers=ADMIN)
            assert r.status_code == 201, r.text
        rigger = [client.post("/v1/votes", json=vote(f"r{i}", voter="rigger"), headers=key)
                  for i in range(12)]
        honest = [client.post("/v1/votes", json=vote(f"h{i}", voter=f"h{i}", model_b="c"),
                              headers=key) for i in range(12)]
        unknown = [client.post("/v1/votes", json=vote(f"u{i}", model_b="nobody"), headers=key)
                   for i in range(3)]
        answers = await asyncio.gather(*rigger, *honest, *unknown)
    rigged = Counter(r.status_code for r in answers[:12])
    assert rigged == {202: 5, 429: 7}, rigged
    for r in answers[:12]:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1 and "voter:rigger" in r.json()["detail"]
    assert all(r.status_code == 202 for r in answers[12:24]), [r.text for r in answers[12:24]]
    for r in answers[24:]:
        assert r.status_code == 422 and r.json()["detail"][0]["models"] == ["nobody"]
    produced = await produced_ids(infra, prefix)
    assert len(produced) == 5 + 12 and not any(v.startswith("gu") for v in produced)


@pytest.mark.parametrize("ingest", [{"PODIUM_INGEST_VOTER_BURST": "5",
                                     "PODIUM_INGEST_VOTER_VOTES_PER_S": "0.01"}], indirect=True)
async def test_a_known_key_is_confirmed_and_its_retries_not_charged_in_one_call(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    """Once a key has been found valid, its groups take one Redis call (key confirmed, votes
    looked up, new ones charged): retries of accepted votes are answered as duplicates and cost
    the voter nothing, and a revoked key is refused there too."""
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        created = (await client.post("/v1/admin/clients", json={"client": "frontend"},
                                     headers=ADMIN)).json()
        key = {"X-API-Key": created["api_key"]}
        first = await client.post("/v1/votes", json=vote("k0", voter="v"), headers=key)
        assert first.status_code == 202, first.text
        retries = [client.post("/v1/votes", json=vote("k0", voter="v"), headers=key)
                   for _ in range(10)]
        batch_retry = client.post("/v1/votes/batch", json=[vote("k0", voter="v")] * 3,
                                  headers=key)
        answers = await asyncio.gather(*retries, batch_retry)
        assert all(r.status_code == 202 for r in answers), [r.text for r in answers]
        assert all(r.json()["duplicates"] == r.json()["accepted"] for r in answers[:-1])
        assert answers[-1].json() == {"accepted": ["gk0"], "duplicates": ["gk0"] * 3}
        fresh = await asyncio.gather(*(client.post("/v1/votes", json=vote(f"k{i}", voter="v"),
                                                   headers=key) for i in range(1, 5)))
        assert [r.status_code for r in fresh] == [202] * 4, [r.text for r in fresh]
        over = await client.post("/v1/votes", json=vote("k5", voter="v"), headers=key)
        assert over.status_code == 429 and "voter:v" in over.text
        r = await client.delete(f"/v1/admin/clients/{created['key_id']}", headers=ADMIN)
        assert r.status_code == 204
        revoked = await asyncio.gather(*(client.post("/v1/votes", json=vote(f"x{i}"),
                                                     headers=key) for i in range(5)))
        assert all(r.status_code == 401 for r in revoked), [r.text for r in revoked]
    assert sorted(await produced_ids(infra, prefix)) == [f"gk{i}" for i in range(5)]


@pytest.mark.parametrize("ingest", [{"PODIUM_INGEST_MAX_BODY_BYTES": "65536"}], indirect=True)
async def test_revoked_keys_signed_requests_and_bad_bodies_on_the_vote_route(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        created = (await client.post("/v1/admin/clients", json={"client": "frontend"},
                                     headers=ADMIN)).json()
        key = {"X-API-Key": created["api_key"]}
        assert (await client.post("/v1/votes", json=vote(1), headers=key)).status_code == 202
        # a signed request is checked by the documented route (signature, window, replay)
        stamp = str(int(time.time()))
        body = httpx.Request("POST", "http://x", json=vote(2)).content
        signed = {**key, "content-type": "application/json", "X-Podium-Timestamp": stamp,
                  "X-Podium-Signature": sign(created["api_key"], stamp, "POST", "/v1/votes",
                                             body)}
        assert (await client.post("/v1/votes", content=body, headers=signed)).status_code == 202
        replay = await client.post("/v1/votes", content=body, headers=signed)
        assert replay.status_code == 401 and "replayed" in replay.text
        # invalid and oversized bodies get the documented errors
        r = await client.post("/v1/votes", json=vote(3, winner="nobody"), headers=key)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "winner"]
        r = await client.post("/v1/votes", content=b"{oops", headers={
            **key, "content-type": "application/json"})
        assert r.status_code == 422
        big = b"{" + b" " * 100_000 + b"}"
        r = await client.post("/v1/votes", content=big, headers={
            **key, "content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.text

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit still holds
            for start in range(0, len(big), 16_384):
                yield big[start:start + 16_384]

        r = await client.post("/v1/votes", content=chunks(), headers={
            **key, "content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.text
        # revocation takes effect at once
        r = await client.delete(f"/v1/admin/clients/{created['key_id']}", headers=ADMIN)
        assert r.status_code == 204
        r = await client.post("/v1/votes", json=vote(4), headers=key)
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert sorted(await produced_ids(infra, prefix)) == ["g1", "g2"]
