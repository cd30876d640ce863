"""Running like a service: /healthz, /readyz and /metrics of the three processes move by the
right amounts, request ids come back, and JSON logs carry the request and vote ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.support.infra import Infra, service_env
from tests.support.metrics import scrape
from tests.support.processes import ServiceProcess, running_stack
from tests.support.wait import wait_until


@pytest.fixture
async def json_stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_LOG_FORMAT="json",
                      PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix) as services:
        yield services


def vote(i: int, **extra: object) -> dict[str, object]:
    return {"vote_id": f"ops{i}", "arena": "text", "model_a": "m-a", "model_b": "m-b",
            "winner": "model_a" if i % 3 else "model_b", "language": "en", **extra}


async def ready_as(url: str, expected: dict[str, bool]) -> bool | None:
    """True once ``url``'s /readyz answers 200 with ``expected``."""
    async with httpx.AsyncClient(base_url=url) as http:
        ready = await http.get("/readyz")
    return True if ready.status_code == 200 and ready.json() == expected else None


async def test_metrics_count_what_happened(json_stack: dict[str, ServiceProcess]) -> None:
    ingest, rating, api = json_stack["ingest"], json_stack["rating"], json_stack["api"]
    for service in (ingest, rating, api):
        async with httpx.AsyncClient(base_url=service.url) as http:
            assert (await http.get("/healthz")).status_code == 200
        # ingest and the worker also say whether they replay a system of record into Redis
        expected = {"kafka": True, "redis": True}
        if service is not api:
            expected["restoring"] = False
        assert await wait_until(lambda u=service.url, e=expected: ready_as(u, e), 30,  # type: ignore[misc]
                                f"{service.url}/readyz 200 {expected}")

    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
        r = await http.post("/v1/votes", json=vote(0), headers={"x-request-id": "req-42"})
        assert r.status_code == 202 and r.headers["x-request-id"] == "req-42"
        assert (await http.post("/v1/votes/batch", json=[vote(i) for i in range(1, 50)])
                ).status_code == 202
        assert (await http.post("/v1/votes", json=vote(0))).status_code == 202  # duplicate
        assert (await http.post("/v1/votes", json=vote(99, winner="x"))).status_code == 422
        bad_batch = [vote(100), vote(101), vote(102, model_b="m-a")]
        assert (await http.post("/v1/votes/batch", json=bad_batch)).status_code == 422
        r = await http.post("/v1/votes")
        assert r.headers["x-request-id"]  # made up when the client sent none

    metrics = await scrape(ingest.url)
    assert metrics["podium_ingest_votes_accepted_total"] == 50
    assert metrics["podium_ingest_votes_duplicate_total"] == 1
    assert metrics['podium_ingest_votes_rejected_total{reason="invalid"}'] == 1 + 3
    # the POST without a body (nor a Content-Type) is refused as 415 since issue #16
    assert metrics['podium_ingest_votes_rejected_total{reason="unsupported_media_type"}'] == 1
    assert metrics["podium_ingest_batch_votes_count"] == 3
    assert metrics["podium_ingest_batch_votes_sum"] == 51
    assert metrics['podium_ingest_http_requests_total{method="POST",route="/v1/votes",'
                   'status="202"}'] == 2

    async def all_rated() -> dict[str, float] | None:
        m = await scrape(rating.url)
        lags = [v for k, v in m.items() if k.startswith("podium_rating_consumer_lag{")]
        done = m.get("podium_rating_votes_total") == 50 and len(lags) == 4 and sum(lags) == 0
        return m if done else None

    m = await wait_until(all_rated, 60, "50 votes rated and committed")
    assert m["podium_rating_batch_votes_sum"] == 50
    assert m["podium_rating_apply_seconds_count"] == m["podium_rating_batch_votes_count"] >= 1
    assert m["podium_rating_refit_seconds_count"] >= 1
    assert m["podium_rating_boards_refitted_total"] >= 2  # text/overall and text/lang:en

    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        # (an unfiltered board read takes the api's fast path, which no middleware sees)
        board = (await http.get("/v1/leaderboards/text/overall", params={"top": 5})).json()
        assert board["votes"] == 50
        assert (await scrape(api.url))["podium_api_stream_clients"] == 0
        async with http.stream("GET", "/v1/events/rank-changes") as stream:
            assert stream.status_code == 200
            assert (await scrape(api.url))["podium_api_stream_clients"] == 1
    api_metrics = await scrape(api.url)
    assert api_metrics['podium_api_http_requests_total{method="GET",'
                       'route="/v1/leaderboards/{arena}/{view}",status="200"}'] == 1

    lines = [orjson.loads(line) for line in ingest.log_path.read_bytes().splitlines()
             if line.startswith(b"{")]
    assert lines and all({"ts", "level", "service", "message"} <= set(e) for e in lines)
    assert all(e["service"] == "ingest" for e in lines)


async def test_log_lines_carry_the_request_and_vote_ids(
    infra: Infra, prefix: str
) -> None:
    env = service_env(infra, prefix, PODIUM_LOG_FORMAT="json", PODIUM_LOG_LEVEL="DEBUG")
    ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
    try:
        async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
            r = await http.post("/v1/votes", json=vote(7), headers={"x-request-id": "trace-7"})
            assert r.status_code == 202
    finally:
        assert ingest.stop() == 0
    entries = [orjson.loads(line) for line in ingest.log_path.read_bytes().splitlines()
               if line.startswith(b"{")]
    tagged = [e for e in entries if e.get("request_id") == "trace-7"]
    accepted = [e for e in tagged if e["message"] == "accepted 1 votes (0 duplicates)"]
    assert accepted and accepted[0]["vote_id"] == "ops7", entries[-5:]
