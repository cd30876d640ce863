"""The edges of what ingest accepts, against ingest as a process (its fast path in front) on the
real broker and Redis: media types, JSON types, what a signature covers, repeated vote ids and
requests that could never pass a limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from services.ingest.client_keys import sign
from shared.events import decode_vote_record
from tests.support.infra import ADMIN_TOKEN, Infra, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"content-type": "application/json"}


def vote(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"vote_id": f"e{i}", "arena": "text", "model_a": "a", "model_b": "b",
            "winner": "model_a", **extra}


@pytest.fixture
async def ingest(infra: Infra, prefix: str, request: pytest.FixtureRequest
                 ) -> AsyncIterator[ServiceProcess]:
    extra: dict[str, str] = getattr(request, "param", {})
    env = service_env(infra, prefix, **extra)
    service = await ServiceProcess("ingest", env, log_name=f"ingest-edges-{prefix}").start()
    try:
        yield service
    finally:
        assert service.stop() == 0, "ingest shut down cleanly on SIGTERM"


async def produced(infra: Infra, prefix: str) -> list[Any]:
    return [v for record in await read_topic(infra.kafka_bootstrap, prefix + ".podium.votes")
            for v in decode_vote_record(record)]


async def test_a_body_that_is_not_json_is_415_naming_what_is_accepted(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    body = orjson.dumps(vote(1))
    batch = orjson.dumps([vote(2)])
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None,
                             "application/jsonp"):
            headers = {} if content_type is None else {"content-type": content_type}
            r = await client.post("/v1/votes", content=body, headers=headers)
            assert r.status_code == 415, (content_type, r.status_code, r.text)
            assert "application/json" in r.json()["detail"]
            r = await client.post("/v1/votes/batch", content=batch, headers=headers)
            assert r.status_code == 415, (content_type, r.status_code, r.text)
            assert "application/json or application/x-ndjson" in r.json()["detail"]
        r = await client.post("/v1/votes/batch", content=body, headers={
            "content-type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
        r = await client.post("/v1/votes", content=orjson.dumps(vote(3)), headers={
            "content-type": "Application/JSON; charset=utf-8"})
        assert r.status_code == 202, r.text
        metrics = (await client.get("/metrics")).text
    assert 'podium_ingest_votes_rejected_total{reason="unsupported_media_type"} 8.0' in metrics
    assert sorted(v.vote_id for v in await produced(infra, prefix)) == ["e1", "e3"]


@pytest.mark.parametrize("change", [
    {"turns": True}, {"turns": "2"}, {"anonymous": "yes"}, {"anonymous": 0},
    {"style": {"model_a": {"tokens": "10"}, "model_b": {"tokens": 3}}},
])
async def test_numbers_and_flags_must_have_their_json_type(
    ingest: ServiceProcess, infra: Infra, prefix: str, change: dict[str, Any]
) -> None:
    field = next(iter(change))
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        r = await client.post("/v1/votes", json=vote(1, **change))  # the fast path's
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], (
            r.text)
        r = await client.post("/v1/votes/batch", json=[vote(2), vote(3, **change)])
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", 1, field]
        r = await client.post("/v1/scores", json={"model": "a", "benchmark": "x",
                                                  "score": "1.5", "source": "s"})
        assert r.status_code == 422 and "score" in r.text
        r = await client.post("/v1/votes", json=vote(4, turns=2, anonymous=False,
                                                     received_at="2026-01-02T03:04:05Z"))
        assert r.status_code == 202, r.text
    assert [v.vote_id for v in await produced(infra, prefix)] == ["e4"]


async def test_the_signature_covers_the_query_string(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        created = (await client.post("/v1/admin/clients", json={
            "client": "signer", "require_signature": True}, headers=ADMIN)).json()

        def signed(body: bytes, query: str) -> dict[str, str]:
            stamp = str(int(time.time()))
            return {**JSON, "X-Podium-Key-Id": created["key_id"], "X-Podium-Timestamp": stamp,
                    "X-Podium-Signature": sign(created["api_key"], stamp, "POST", "/v1/votes",
                                               body, query)}

        body = orjson.dumps(vote(1))
        r = await client.post("/v1/votes?source=web", content=body,
                              headers=signed(body, "source=web"))
        assert r.status_code == 202, r.text
        body = orjson.dumps(vote(2))
        r = await client.post("/v1/votes?source=evil", content=body,
                              headers=signed(body, "source=web"))
        assert r.status_code == 401 and "bad request signature" in r.text
        r = await client.post("/v1/votes", content=body, headers=signed(body, "source=web"))
        assert r.status_code == 401 and "bad request signature" in r.text
        r = await client.post("/v1/votes?source=web", content=body, headers=signed(body, ""))
        assert r.status_code == 401 and "bad request signature" in r.text
        body = orjson.dumps(vote(3))
        r = await client.post("/v1/votes", content=body, headers=signed(body, ""))
        assert r.status_code == 202, r.text
    assert sorted(v.vote_id for v in await produced(infra, prefix)) == ["e1", "e3"]


async def test_the_first_copy_of_a_vote_id_counts_in_a_batch_as_across_requests(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        # registers the models: the next requests are accepted in one Redis call
        assert (await client.post("/v1/votes", json=vote("warm"))).status_code == 202
        small = [vote("x"), vote("x", winner="model_b"), vote("y"), vote("x", winner="tie")]
        r = await client.post("/v1/votes/batch", json=small)
        assert r.status_code == 202 and r.json() == {"accepted": ["ex", "ey"],
                                                     "duplicates": ["ex", "ex"]}, r.text
        r = await client.post("/v1/votes/batch", json=small[:2])  # a retry
        assert r.json() == {"accepted": ["ex"], "duplicates": ["ex", "ex"]}, r.text
        # a batch too large for the one-call path, as NDJSON, repeats spread over it
        large = [vote(f"l{i % 250}", winner="model_a" if i < 250 else "model_b")
                 for i in range(300)]
        r = await client.post("/v1/votes/batch", content=b"\n".join(map(orjson.dumps, large)),
                              headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": [f"el{i}" for i in range(250)],
                            "duplicates": [f"el{i}" for i in range(50)]}
        # two requests at once with the same id: one counts it, the other is told it did not
        racing = [[vote("r", winner="model_a")], [vote("z"), vote("r", winner="model_b")]]
        answers = await asyncio.gather(*(client.post("/v1/votes/batch", json=b)
                                         for b in racing))
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        winners = [b[-1]["winner"] for b, a in zip(racing, answers, strict=True)
                   if "er" not in a.json()["duplicates"]]
        assert len(winners) == 1, [a.json() for a in answers]
    counted = [v.vote_id for v in await produced(infra, prefix)]
    votes = {v.vote_id: v for v in await produced(infra, prefix)}
    assert sorted(counted) == sorted(["ewarm", "ex", "ey", "er", "ez",
                                      *(f"el{i}" for i in range(250))]), "each id once"
    assert votes["ex"].winner == "model_a" and votes["er"].winner == winners[0]
    assert all(votes[f"el{i}"].winner == "model_a" for i in range(250))


@pytest.mark.parametrize("ingest", [{
    "PODIUM_INGEST_VOTER_BURST": "5", "PODIUM_INGEST_VOTER_VOTES_PER_S": "0.01",
    "PODIUM_INGEST_VOTER_DAILY_CAP": "8", "PODIUM_INGEST_CLIENT_BURST": "20",
    "PODIUM_INGEST_CLIENT_VOTES_PER_S": "0.01"}], indirect=True)
async def test_a_request_over_a_whole_burst_is_422_not_a_429_to_retry_forever(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        r = await client.post("/v1/votes/batch", json=[vote(i, voter="u1") for i in range(6)])
        assert r.status_code == 422 and "retry-after" not in r.headers, r.text
        [error] = r.json()["detail"]
        assert error["type"] == "over_limit" and error["limit"] == "voter:u1"
        assert "6 new votes for voter:u1" in error["msg"] and "voter burst of 5" in error["msg"]
        accepted = [vote(i, voter="u1") for i in range(5)]
        assert (await client.post("/v1/votes/batch", json=accepted)).status_code == 202
        # only new votes are weighed: the retried five cost nothing, the sixth must wait
        r = await client.post("/v1/votes/batch", json=[*accepted, vote(5, voter="u1")])
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
        r = await client.post("/v1/votes/batch", json=[vote(f"c{i}") for i in range(21)])
        assert r.status_code == 422 and "client burst of 20" in r.text, r.text
        assert r.json()["detail"][0]["limit"] == "client:-"
    assert sorted(v.vote_id for v in await produced(infra, prefix)) == [
        f"e{i}" for i in range(5)]


@pytest.mark.parametrize("ingest", [{"PODIUM_INGEST_VOTER_DAILY_CAP": "3"}], indirect=True)
async def test_a_request_over_a_voters_daily_cap_is_422(
    ingest: ServiceProcess, infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        r = await client.post("/v1/votes/batch", json=[vote(i, voter="w") for i in range(4)])
        assert r.status_code == 422 and "retry-after" not in r.headers, r.text
        assert r.json()["detail"][0]["limit"] == "voter-daily-cap:w"
        assert "daily cap of 3" in r.text
        metrics = (await client.get("/metrics")).text
    assert 'podium_ingest_votes_rejected_total{reason="over_limit"} 4.0' in metrics
    assert await produced(infra, prefix) == []
